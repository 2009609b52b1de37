"""The interface every annotation type implements."""

from __future__ import annotations

from typing import Any, Protocol


class AnnotationType(Protocol):
    name: str
    #: price of one judgement in cents (the published price table, docs/configuration.md)
    price_per_judgement_cents: int

    def validate_labels(self, labels: Any) -> list[Any]:
        """Check a project's label config; return it normalised or raise ``ValueError``."""

    def validate_value(self, value: Any, labels: list[Any]) -> Any:
        """Check one judgement's value; return it normalised or raise ``ValueError``."""
