"""Single-label classification: the value is one of the project's labels."""

from __future__ import annotations

from typing import Any

MAX_LABELS = 1000
MAX_LABEL_LENGTH = 200


class Classification:
    name = "classification"
    price_per_judgement_cents = 1500

    def validate_labels(self, labels: Any) -> list[Any]:
        if not isinstance(labels, list) or not labels:
            raise ValueError("labels must be a non-empty list of strings")
        if len(labels) > MAX_LABELS:
            raise ValueError(f"labels has {len(labels)} entries; at most {MAX_LABELS} are allowed")
        seen: set[str] = set()
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"labels[{i}] must be a non-empty string, got {label!r}")
            if len(label) > MAX_LABEL_LENGTH:
                raise ValueError(f"labels[{i}] is longer than {MAX_LABEL_LENGTH} characters")
            if label in seen:
                raise ValueError(f"labels[{i}] repeats {label!r}; labels must be unique")
            seen.add(label)
        return list(labels)

    def validate_value(self, value: Any, labels: list[Any]) -> Any:
        if isinstance(value, dict) and "choices" in value:  # Label Studio's shape
            choices = value["choices"]
            value = choices[0] if isinstance(choices, list) and len(choices) == 1 else choices
        if not isinstance(value, str) or value not in labels:
            raise ValueError(f"label {value!r} is not one of the project's labels {labels}")
        return value


TYPE = Classification()
