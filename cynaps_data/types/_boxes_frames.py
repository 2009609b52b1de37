"""Frames of the ``boxes`` type (:mod:`cynaps_data.types.boxes`): COCO JSON from an export
frame, and the plain-Python values an export frame's object columns hold."""

from __future__ import annotations

import ast
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ..errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

COORDS = ("x", "y", "width", "height")


def to_coco(frame: pd.DataFrame, column: str = "label", config: Any = None) -> dict:
    """A wide export frame of a ``boxes`` project (``project.to_pandas()``) as COCO detection
    JSON: ``{"images", "annotations", "categories"}``.

    ``images``: one per task whose ``column`` holds boxes (``id`` = the task id, ``width``/
    ``height`` from the frame's columns, ``file_name`` = the ``external_id`` or the task id);
    ``annotations``: one per box (``bbox`` ``[x_min, y_min, width, height]`` in pixels,
    ``area`` = width x height, ``iscrowd`` 0, ``category_id``); ``categories``: the project's
    labels in order, ids from 1. ``config``: the label config (default: the frame's
    ``attrs``, as the export sets it). A task without a known image size is an error naming
    its task id."""
    import pandas as pd

    if config is None:
        config = (frame.attrs.get("cynaps") or {}).get("labels")
    if config is None:
        raise ValidationError("to_coco needs the label config (frame.attrs or config=)")
    labels = _type().validate_config(config)["labels"]
    ids = {label: i + 1 for i, label in enumerate(labels)}
    missing = [c for c in (column, "width", "height") if c not in frame.columns]
    if missing:
        raise ValidationError(f"to_coco: the frame has no column {missing[0]!r}", param=missing[0])
    names = frame["external_id"] if "external_id" in frame.columns else None
    images, annotations = [], []
    for task, value in frame[column].items():
        value = _box_list(value, column, task)
        if value is None:
            continue
        width, height = frame.at[task, "width"], frame.at[task, "height"]
        if pd.isna(width) or pd.isna(height):
            raise ValidationError(f"to_coco: task {task} has no image width/height", param="width")
        name = names.at[task] if names is not None and isinstance(names.at[task], str) else None
        images.append(
            {
                "id": int(task),
                "width": int(width),
                "height": int(height),
                "file_name": name or str(task),
            }
        )
        for k, b in enumerate(value):
            if not isinstance(b, dict) or b.get("label") not in ids:
                label = b.get("label") if isinstance(b, dict) else b
                raise ValidationError(
                    f"to_coco: task {task} {column}[{k}] label {label!r} is not one of the "
                    f"labels {labels}",
                    param=column,
                )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(task),
                    "category_id": ids[b["label"]],
                    "bbox": [float(b[c]) for c in COORDS],
                    "area": float(b["width"]) * float(b["height"]),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": label} for label, i in ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def _box_list(value: Any, column: str, task: Any) -> list | None:
    """A frame cell's boxes as a list of dicts, as the sinks give them back: a list (pandas,
    pickle), an array (Parquet, feather, ``datasets``), JSON or a Python literal (CSV);
    ``None`` for a missing value (null, NaN)."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                value = None
    value = _plain(value) if isinstance(value, (list, tuple, np.ndarray)) else value
    if not isinstance(value, list):
        raise ValidationError(f"to_coco: task {task} {column} is not a list of boxes", param=column)
    return value


def _type() -> Any:
    from .boxes import TYPE

    return TYPE


def _plain(value: Any) -> Any:
    """Arrow/numpy nesting as plain Python lists (what an object column should hold)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _plain_boxes(value: Any) -> list[dict] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return [{**{c: float(b[c]) for c in COORDS}, "label": str(b["label"])} for b in _plain(value)]


def fit_frame(model: Any, votes: pd.DataFrame, tasks: Any, columns: list[str]) -> pd.DataFrame:
    """Fit a box aggregator (:mod:`cynaps_data.consensus.boxes_model`) on the annotators'
    ``votes`` (task, worker, label = box lists; an empty list is one row of null coordinates)
    and return ``columns`` (label, objects, confidence) per task of ``tasks``."""
    import pandas as pd

    rows: dict[str, list] = {k: [] for k in ("task", "worker", *COORDS, "label")}
    for task, worker, value in zip(votes["task"], votes["worker"], votes["label"], strict=True):
        for b in _plain_boxes(value) or [None]:  # no box: one row of null coordinates
            rows["task"].append(task)
            rows["worker"].append(str(worker))
            for c in COORDS:
                rows[c].append(np.nan if b is None else b[c])
            rows["label"].append(None if b is None else b["label"])
    model.fit(pd.DataFrame(rows))
    found = model.boxes_
    labels, objects, confidence = [], [], []
    groups = {t: g for t, g in found.groupby("task", sort=False)} if len(found) else {}
    for task in tasks:
        g = groups.get(task)
        boxes = (
            []
            if g is None
            else [
                {**{c: round(float(getattr(r, c)), 2) for c in COORDS}, "label": r.label}
                for r in g.itertuples()
            ]
        )
        support = [] if g is None else [round(float(v), 6) for v in g["support"]]
        conf = [] if g is None else [round(float(v), 6) for v in g["confidence"]]
        labels.append(boxes)
        objects.append(
            {
                "bbox": [[b[c] for c in COORDS] for b in boxes],
                "category": [b["label"] for b in boxes],
                "area": [round(b["width"] * b["height"], 4) for b in boxes],
                "support": support,
                "confidence": conf,
            }
        )
        confidence.append(float(np.mean(conf)) if conf else np.nan)
    return pd.DataFrame(
        {
            columns[0]: pd.Series(labels, index=tasks, dtype=object),
            columns[1]: pd.Series(objects, index=tasks, dtype=object),
            columns[2]: pd.Series(confidence, index=tasks, dtype="float64"),
        }
    )
