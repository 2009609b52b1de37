"""Training views of a ``spans`` export (part of the spans type, :mod:`.spans`): token
classification for ``AutoModelForTokenClassification`` and CoNLL text. Public as
:func:`cynaps_data.io.token_classification` and :func:`cynaps_data.io.to_conll`.

Data contract of the input: a wide export of a spans project (``project.to_pandas()``, or a
project, exported here), one row per task, its text in the data column the config's ``field``
names and the spans in ``column`` (``label`` by default; ``gold``, ``expert_label`` or a
re-aggregation's ``<method>_label`` work too): lists of ``{start, end, label, ...}`` (JSON text
after a CSV round trip). Rows whose spans are missing (no final value yet) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..consensus.spans_tokens import conll_lines, iob2_names, spans_to_tags, tokenize
from ..errors import ValidationError

if TYPE_CHECKING:
    import datasets
    import pandas as pd


def _frame_and_config(source: Any, labels: Any, field: str | None) -> tuple[Any, dict]:
    import pandas as pd

    from .spans import TYPE

    frame = source if isinstance(source, pd.DataFrame) else source.to_pandas()
    info = frame.attrs.get("cynaps") or {}
    config = labels if labels is not None else info.get("labels")
    if config is None:
        raise ValidationError(
            "the frame carries no project labels (attrs['cynaps']); pass labels=", param="labels"
        )
    config = TYPE.validate_config(config)
    if field is not None:
        config["field"] = field
    if config["field"] not in frame.columns:
        raise ValidationError(
            f"no text column {config['field']!r} in the frame (the config's field); pass field=",
            param="field",
        )
    return frame, config


def _spans(value: Any, column: str, row: Any) -> list | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):  # CSV: JSON (io.to_csv) or a Python literal (pandas)
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                value = None
    if not hasattr(value, "__iter__") or isinstance(value, dict):
        raise ValidationError(f"{column}[{row!r}] is not a list of spans", param=column)
    return list(value)


def _rows(frame: pd.DataFrame, config: dict, column: str, tokenizer: Any):
    if column not in frame.columns:
        raise ValidationError(f"no column {column!r} in the frame", param="column")
    for task, text, value in zip(frame.index, frame[config["field"]], frame[column], strict=True):
        spans = _spans(value, column, task)
        if spans is None or not isinstance(text, str):
            continue
        for k, span in enumerate(spans):
            if isinstance(span, dict):
                label = span.get("label")
            else:  # a (start, end, label) sequence
                label = span[2] if isinstance(span, (list, tuple)) and len(span) == 3 else None
            if label not in config["labels"]:
                raise ValidationError(
                    f"{column}[{task!r}][{k}] label {label!r} is not one of the labels "
                    f"{config['labels']} (pass labels= with every label of the spans)",
                    param=column,
                )
        tokens, offsets = tokenize(text, tokenizer)
        yield task, tokens, spans_to_tags(spans, offsets)


def token_classification(
    source: Any,
    tokenizer: Any = None,
    *,
    column: str = "label",
    labels: Any = None,
    field: str | None = None,
) -> datasets.Dataset:
    """A token-classification ``datasets.Dataset`` of a spans export (or project).

    Columns: ``task`` (int64), ``tokens`` (``List(Value("string"))``) and ``ner_tags``
    (``List(ClassLabel(names=["O", "B-PER", "I-PER", ...]))``, the conll2003 convention, labels
    in the project's order). ``tokenizer``: ``None`` splits on whitespace; a Hugging Face fast
    tokenizer (offsets from ``return_offsets_mapping``) or any callable giving offsets works
    too (:func:`cynaps_data.consensus.spans_tokens.tokenize`). A token is tagged when it shares
    a character with a span (``B-`` for the first, ``I-`` after). ``labels``/``field``: the
    config and text field when the frame does not carry them (``attrs["cynaps"]``)."""
    import datasets

    frame, config = _frame_and_config(source, labels, field)
    names = iob2_names(config["labels"])
    code = {name: i for i, name in enumerate(names)}
    tasks, token_rows, tag_rows = [], [], []
    for task, tokens, tags in _rows(frame, config, column, tokenizer):
        tasks.append(int(task))
        token_rows.append(tokens)
        tag_rows.append([code[t] for t in tags])
    features = datasets.Features(
        {
            "task": datasets.Value("int64"),
            "tokens": datasets.List(datasets.Value("string")),
            "ner_tags": datasets.List(datasets.ClassLabel(names=names)),
        }
    )
    return datasets.Dataset.from_dict(
        {"task": tasks, "tokens": token_rows, "ner_tags": tag_rows}, features=features
    )


def to_conll(
    source: Any,
    path: str | Path | None = None,
    tokenizer: Any = None,
    *,
    column: str = "label",
    labels: Any = None,
    field: str | None = None,
) -> str | Path:
    """CoNLL text of a spans export: one ``token TAG`` line per token (IOB2; whitespace inside
    a token becomes ``_``), a blank line after each task's text. Written to ``path`` when
    given (and the path returned), else returned as a string. Arguments as
    :func:`token_classification`."""
    frame, config = _frame_and_config(source, labels, field)
    lines: list[str] = []
    for _, tokens, tags in _rows(frame, config, column, tokenizer):
        if tokens:
            lines += conll_lines(tokens, tags)
            lines.append("")
    text = "\n".join(lines) + ("\n" if lines else "")
    if path is None:
        return text
    Path(path).write_text(text, encoding="utf-8")
    return Path(path)
