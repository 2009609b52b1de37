"""The sandbox workforce's answers for the ``boxes`` type (:mod:`cynaps_data.types.boxes`):
a deterministic pseudo-truth per task and a simulated annotator's noisy redrawing of it."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

from .boxes import MAX_BOXES, _boxes, image_size


def pseudo_truth(data_json: str, config: dict) -> Any:
    """0-4 boxes placed by a hash of the task data inside its image (640 x 480 when its
    size is unknown), some small (~4 % of a side), labels picked by the hash."""
    data = orjson.loads(data_json) if data_json else {}
    width, height = image_size(data, config) or (640, 480)
    digest = hashlib.sha256(data_json.encode()).digest()
    rng = random.Random(digest)
    count = (0, 1, 1, 2, 2, 3, 3, 4)[digest[0] % 8]
    smallest = max(float(config["min_size"]), 1.0)
    boxes = []
    for _ in range(count):
        share = rng.choice((0.04, 0.1, 0.2, 0.3))
        w = min(width, max(smallest, round(width * share * rng.uniform(0.7, 1.3), 2)))
        h = min(height, max(smallest, round(height * share * rng.uniform(0.7, 1.3), 2)))
        x = round(rng.uniform(0, width - w), 2)
        y = round(rng.uniform(0, height - h), 2)
        boxes.append(
            {"x": x, "y": y, "width": w, "height": h, "label": rng.choice(config["labels"])}
        )
    return boxes


def simulate(
    truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
) -> Any:
    """The truth redrawn by an annotator of error ``e = 1 - accuracy``: each box missed
    with probability ``min(0.9, 2e)`` when small (< 1 % of the image) else ``e / 3``; its
    edges jittered by N(0, σ) with σ = ``e`` x 10 % of its side (σ per annotator, from
    ``rng``); split in two with probability ``e / 5``; merged with the next box of its
    label with probability ``e / 5``; mislabelled with probability ``e / 2``; plus a stray
    box with probability ``e``. Clamped to the image; accuracy 1 draws the truth."""
    boxes = [dict(b) for b in (_boxes(truth) or [])]
    error = max(0.0, 1.0 - float(accuracy))
    if error == 0.0:
        return boxes
    extent = image_size(data, config) if data is not None else None
    if extent is None:
        far = [(b["x"] + b["width"], b["y"] + b["height"]) for b in boxes]
        extent = (
            max([640.0, *(f[0] for f in far)]),
            max([480.0, *(f[1] for f in far)]),
        )
    width, height = extent
    labels = config["labels"]
    smallest = max(float(config["min_size"]), 1.0)
    sigma = error * 0.1 * rng.uniform(0.5, 1.5)
    out: list[dict] = []
    i = 0
    while i < len(boxes):
        b = boxes[i]
        i += 1
        small = b["width"] * b["height"] < 0.01 * width * height
        if rng.random() < (min(0.9, 2 * error) if small else error / 3):
            continue
        if i < len(boxes) and boxes[i]["label"] == b["label"] and rng.random() < error / 5:
            o = boxes[i]
            i += 1
            x0, y0 = min(b["x"], o["x"]), min(b["y"], o["y"])
            x1 = max(b["x"] + b["width"], o["x"] + o["width"])
            y1 = max(b["y"] + b["height"], o["y"] + o["height"])
            b = {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "label": b["label"]}
        x0 = b["x"] + rng.gauss(0, sigma * b["width"])
        x1 = b["x"] + b["width"] + rng.gauss(0, sigma * b["width"])
        y0 = b["y"] + rng.gauss(0, sigma * b["height"])
        y1 = b["y"] + b["height"] + rng.gauss(0, sigma * b["height"])
        label = b["label"]
        if len(labels) > 1 and rng.random() < error / 2:
            label = rng.choice([lab for lab in labels if lab != label])
        pieces = [(x0, y0, x1, y1)]
        if rng.random() < error / 5:
            if x1 - x0 >= y1 - y0:
                mid = (x0 + x1) / 2
                pieces = [(x0, y0, mid, y1), (mid, y0, x1, y1)]
            else:
                mid = (y0 + y1) / 2
                pieces = [(x0, y0, x1, mid), (x0, mid, x1, y1)]
        for p in pieces:
            box = _clamped(*p, width, height, smallest, label)
            if box is not None:
                out.append(box)
    if rng.random() < error:
        w = rng.uniform(0.05, 0.3) * width
        h = rng.uniform(0.05, 0.3) * height
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        stray = _clamped(x, y, x + w, y + h, width, height, smallest, rng.choice(labels))
        if stray is not None:
            out.append(stray)
    return out[:MAX_BOXES]


def _clamped(
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    width: float,
    height: float,
    smallest: float,
    label: str,
) -> dict | None:
    """A box from corners clamped to the image, or ``None`` when it gets smaller than
    ``smallest`` (an annotator would not draw it)."""
    x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
    y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
    x0, y0 = round(x0, 2), round(y0, 2)
    w, h = round(min(x1, width) - x0, 2), round(min(y1, height) - y0, 2)
    if w < smallest or h < smallest:
        return None
    return {"x": x0, "y": y0, "width": w, "height": h, "label": label}
