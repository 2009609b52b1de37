"""Geometry of the ``boxes`` type (:mod:`cynaps_data.types.boxes`): pixel numbers, the image
size a task's boxes live in, and one task's boxes merged (consensus) or scored against the
annotators' (support)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._boxes_frames import COORDS

#: IoU at which two boxes are the same object (consensus clusters, agreement, support)
IOU = 0.5


def _number(value: Any, where: str) -> float:
    """A finite number as a float (numpy's numbers too; not a bool, a string or an int too
    large for a float)."""
    number = None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    ):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        raise ValueError(f"{where} must be a finite number of pixels, got {value!r}")
    return number


#: the largest image side taken as a size (PNG's limit; past it the export's int64 columns and
#: the percent conversions are meaningless)
MAX_SIDE = 2**31 - 1


def _int_size(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not 0 < value <= MAX_SIDE or not float(value).is_integer():
        return None
    return int(value)


def image_size(data: Any, config: dict) -> tuple[int, int] | None:
    """``(width, height)`` of the task's image: the image reference's (``data[field]``, an
    asset reference written at upload) or the data's own ``width``/``height`` fields."""
    if not isinstance(data, dict):
        return None
    ref = data.get(config["field"])
    for holder in (ref, data):
        if isinstance(holder, dict):
            w, h = _int_size(holder.get("width")), _int_size(holder.get("height"))
            if w and h:
                return w, h
    return None


def known_size(data: Any, config: dict) -> tuple[int, int]:
    """:func:`image_size`, or a ``ValueError`` saying why the task cannot be boxed."""
    if not isinstance(data, dict) or config["field"] not in data:
        raise ValueError(f"the task has no image field {config['field']!r} (labels.field) to box")
    size = image_size(data, config)
    if size is None:
        raise ValueError(
            f"the size of the task's image {config['field']!r} (labels.field) is unknown: "
            "upload the image as an asset (its size is recorded) or give the task "
            "width/height fields"
        )
    return size


def _boxes(value: Any) -> list[dict] | None:
    return value if isinstance(value, list) else None


def _xywh(boxes: list[dict]) -> np.ndarray:
    """``(n, 4)`` float64 ``x, y, width, height`` of boxes."""
    if not boxes:
        return np.zeros((0, 4))
    return np.array([[b[c] for c in COORDS] for b in boxes], dtype="float64")


def box_support(final: list[dict], votes: list[list[dict]], threshold: float) -> tuple[list, list]:
    """Per final box: ``support`` = share of the annotators who drew a box of its label with
    IoU ≥ ``threshold``, and ``confidence`` = the mean IoU of those annotators' best such boxes
    (0.0 when none)."""
    from ..consensus.boxes import iou_matrix

    if not final:
        return [], []
    n = max(len(votes), 1)
    best = np.zeros((len(final), len(votes)))
    for j, vote in enumerate(votes):
        if not vote:
            continue
        m = iou_matrix(_xywh(final), _xywh(vote))
        same = np.array([[f["label"] == v["label"] for v in vote] for f in final])
        best[:, j] = np.where(same, m, 0.0).max(axis=1)
    hit = best >= threshold
    support = hit.sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(hit.any(axis=1), (best * hit).sum(axis=1) / hit.sum(axis=1), 0.0)
    return [round(float(s), 6) for s in support], [round(float(c), 6) for c in conf]


def _merge(votes: list[list[dict]], min_support: float) -> tuple[list, dict]:
    """:func:`cynaps_data.consensus.boxes.merge_task` of one task's votes, as plain boxes with
    ``support``, and its ``{"f1", "mean_iou"}`` (F1 1.0 for a single vote)."""
    from ..consensus.boxes import merge_task

    kept, stats = merge_task([list(v) for v in votes], min_support=min_support, iou=IOU)
    boxes = [
        {**{c: round(float(b[c]), 2) for c in COORDS}, "label": b["label"]}
        | {"support": round(float(b.get("support", 0.0)), 6)}
        for b in kept
    ]
    return boxes, {k: float(v) for k, v in stats.items()}
