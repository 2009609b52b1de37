"""Bounding boxes on an image (object detection): the value is a list of labelled boxes.

Config (the project's ``labels``): ``{"labels": [...], "field": "image", "min_size": 0}`` —
``labels`` the object classes (1 … 1000 distinct non-empty strings; a plain list is accepted
and normalised to the object), ``field`` the task data field holding the image (default
``"image"``), ``min_size`` the smallest box side in pixels (0: any positive size). Two boxes
are the same object when their intersection over union is at least 0.5 (:data:`IOU`).

Value: ``[{"x", "y", "width", "height", "label"}, ...]`` — the top-left corner and the size in
pixels of the *original* image (numbers rounded to 0.01 px), each box inside the image, with a
positive size of at least ``min_size``, its label one of ``labels``. ``[]`` is an answer
("nothing to box"). The image size comes from the task data: the image reference the client
writes when it uploads an image column as an asset (``{"asset", "url", "width", "height"}``,
read from the image header; the platform records it on the asset too), or the task's own
``width``/``height`` fields (e.g. a URL image with its size given). A task without a known size
cannot be judged (a 422 naming ``labels.field``): boxes are always checked inside the image.

Label Studio: one ``rectanglelabels`` region per box (percent coordinates of
``original_width``/``original_height``), both ways (:meth:`Boxes.label_studio_result`).

Consensus (:func:`cynaps_data.consensus.boxes.merge_task`): the boxes of a task's annotators
are matched across annotators (IoU ≥ 0.5); a cluster drawn by at least
``consensus_threshold`` of them is kept (its coordinates merged), with its ``support`` (the
share of annotators who drew it). Agreement = mean pairwise F1 of the annotators' box sets at
IoU ≥ 0.5 with the same label. Agreement ≥ ``consensus_threshold``: completed (``consensus``); else disputed
(expert review: all annotators' boxes drawn over the image, the merged boxes pre-drawn to
accept or redraw), or one more annotator up to ``max_annotators`` and then the merged boxes
(``majority``).

Export: ``label``/``gold``/``expert_label`` Arrow ``list<struct<x, y, width, height: double,
label: string>>`` (pandas: lists of dicts); ``agreement`` (mean pairwise F1), ``confidence``
(mean support of the final boxes); ``objects`` as in Hugging Face detection datasets (cppe-5,
COCO convention): ``{"bbox": [[x_min, y_min, width, height], ...], "category": [...],
"area": [...], "support": [...], "confidence": [...]}`` (``category`` a ``ClassLabel`` in
``datasets``; per box ``support`` = share of annotators with a matching box, ``confidence`` =
their mean IoU with it); ``width``/``height`` the image size (int). :func:`to_coco` writes COCO
JSON. Client aggregation: ``auto`` = ``reliability`` and ``matching`` (see :meth:`aggregate`).
"""

from __future__ import annotations

import random
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ..errors import ValidationError
from ._boxes_frames import COORDS, _plain, _plain_boxes, fit_frame, to_coco
from ._boxes_geometry import (
    IOU,
    _boxes,
    _int_size,
    _merge,
    _number,
    box_support,
    image_size,
    known_size,
)
from .base import Decision, VoteArrays, json_values, method_prefix, python_texts

if TYPE_CHECKING:  # pandas and consensus.boxes load when a hook needs them
    import pandas as pd

CONFIG_KEYS = ("labels", "field", "min_size")
MAX_LABELS = 1000
MAX_BOXES = 1000
MAX_FIELD = 200
#: how far (px) a box may pass the image edge and be clamped (rounding of percent coordinates)
EDGE_SLACK = 0.5
BOX = pa.struct([(c, pa.float64()) for c in COORDS] + [("label", pa.string())])
VALUE = pa.list_(BOX)
OBJECTS = pa.struct(
    [
        ("bbox", pa.list_(pa.list_(pa.float64()))),
        ("category", pa.list_(pa.string())),
        ("area", pa.list_(pa.float64())),
        ("support", pa.list_(pa.float64())),
        ("confidence", pa.list_(pa.float64())),
    ]
)
OBJECT_KEYS = ("bbox", "category", "area", "support", "confidence")


class Boxes:
    name = "boxes"
    price_per_judgement_cents = 4000
    aggregation_methods = ("auto", "reliability", "matching")
    default_method = "auto"
    agreement_metrics = ("box_f1", "box_mean_iou")

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> dict:
        if isinstance(config, (list, tuple)):
            config = {"labels": list(config)}
        if not isinstance(config, dict):
            raise ValueError(
                'labels must be an object {"labels": [...], "field": "image", "min_size": 0} '
                f"(or a list of class names), got {type(config).__name__}"
            )
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"labels.{unknown[0]} is not a setting of the boxes type ({', '.join(CONFIG_KEYS)})"
            )
        labels = config.get("labels")
        if not isinstance(labels, (list, tuple)) or not 1 <= len(labels) <= MAX_LABELS:
            raise ValueError(f"labels.labels must be a list of 1 to {MAX_LABELS} class names")
        seen: set[str] = set()
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label.strip() or "\x00" in label:
                raise ValueError(f"labels.labels[{i}] must be a non-empty string, got {label!r}")
            if label in seen:
                raise ValueError(f"labels.labels[{i}] {label!r} is listed twice")
            seen.add(label)
        field = config.get("field", "image")
        if not isinstance(field, str) or not field.strip() or len(field) > MAX_FIELD:
            raise ValueError(
                f"labels.field must name the task data field holding the image, got {field!r}"
            )
        min_size = config.get("min_size", 0)
        if (
            isinstance(min_size, bool)
            or not isinstance(min_size, (int, float))
            or not (0 <= min_size <= 10_000)
        ):
            raise ValueError(
                f"labels.min_size must be a number of pixels from 0 to 10000, got {min_size!r}"
            )
        return {
            "labels": list(labels),
            "field": field,
            "min_size": min_size,
        }

    def validate_data(self, data: Any, config: dict) -> None:
        """Upload check: a task whose image field or size is missing could never be boxed."""
        known_size(data, config)

    def validate_value(self, value: Any, config: dict, data: Any = None) -> list[dict]:
        """Boxes as ``[{"x", "y", "width", "height", "label"}]`` (a Label Studio ``result``
        list of ``rectanglelabels`` regions is converted first); errors name ``boxes[i]``."""
        if isinstance(value, list) and any(
            isinstance(b, dict) and b.get("type") == "rectanglelabels" for b in value
        ):
            for i, region in enumerate(value):  # a plain box here would be left out: refuse it
                if not isinstance(region, dict) or not isinstance(region.get("type"), str):
                    raise ValueError(
                        f"result[{i}] is not a Label Studio region: a list of rectanglelabels "
                        "regions cannot also hold plain boxes"
                    )
            value = self.from_label_studio_result(value, config, data)
        if not isinstance(value, list):
            raise ValueError(
                "the answer must be a list of boxes "
                '[{"x", "y", "width", "height", "label"}] ([] for nothing to box), '
                f"got {type(value).__name__}"
            )
        if len(value) > MAX_BOXES:
            raise ValueError(f"the answer has {len(value)} boxes; at most {MAX_BOXES} are allowed")
        size = None if data is None else known_size(data, config)
        labels = set(config["labels"])
        smallest = max(float(config["min_size"]), 0.0)
        out = []
        for i, box in enumerate(value):
            where = f"boxes[{i}]"
            if not isinstance(box, dict):
                raise ValueError(f"{where} must be an object {{x, y, width, height, label}}")
            extra = sorted(set(box) - {*COORDS, "label"})
            if extra:
                raise ValueError(
                    f"{where}.{extra[0]} is not a box field (x, y, width, height, label)"
                )
            x, y, w, h = (_number(box.get(c), f"{where}.{c}") for c in COORDS)
            if w <= 0 or h <= 0:
                raise ValueError(
                    f"{where} has a width or height of {min(w, h):g}: sizes must be positive"
                )
            if x < -EDGE_SLACK or y < -EDGE_SLACK:
                raise ValueError(f"{where} starts outside the image (x = {x:g}, y = {y:g})")
            right, bottom = x + w, y + h
            if size is not None:
                if right > size[0] + EDGE_SLACK or bottom > size[1] + EDGE_SLACK:
                    raise ValueError(
                        f"{where} ends at ({right:g}, {bottom:g}), outside the "
                        f"{size[0]} x {size[1]} image"
                    )
                right, bottom = min(right, size[0]), min(bottom, size[1])
            x, y = max(x, 0.0), max(y, 0.0)
            w, h = right - x, bottom - y
            # stored at 0.01 px: a box that rounds to no width or height has no area
            if w < smallest or h < smallest or round(w, 2) <= 0 or round(h, 2) <= 0:
                raise ValueError(
                    f"{where} is {w:g} x {h:g} px inside the image, smaller than "
                    f"labels.min_size = {smallest:g} px"
                    if round(w, 2) > 0 and round(h, 2) > 0
                    else f"{where} has no area inside the image"
                )
            label = box.get("label")
            if not isinstance(label, str) or label not in labels:
                raise ValueError(
                    f"{where}.label {label!r} is not one of the project's labels {sorted(labels)}"
                )
            out.append(
                {
                    "x": round(x, 2),
                    "y": round(y, 2),
                    "width": round(w, 2),
                    "height": round(h, 2),
                    "label": str(label),
                }
            )
        return out

    def to_label_studio(self, value: Any, config: dict) -> dict:
        """One ``rectanglelabels`` region of the first box in percent of an unknown image: not
        meaningful for boxes; the conversion uses :meth:`label_studio_result` (with the data)."""
        raise ValueError("boxes need the image size: use label_studio_result(value, config, data)")

    def from_label_studio(self, region: dict, config: dict) -> Any:
        if not isinstance(region, dict) or region.get("type") != "rectanglelabels":
            raise ValueError("not a 'rectanglelabels' result")
        return self.from_label_studio_result([region], config, None)

    def label_studio_result(self, value: Any, config: dict, data: Any) -> list[dict]:
        """One ``rectanglelabels`` region per box: ``value`` ``{x, y, width, height}`` in
        percent of ``original_width``/``original_height``, ``rotation`` 0, the label in
        ``rectanglelabels``; ``to_name`` is the image field."""
        boxes = _boxes(value) or []
        size = image_size(data, config)
        if size is None and boxes:
            raise ValueError(f"the size of the task's image {config['field']!r} is unknown")
        out = []
        for i, b in enumerate(boxes):
            width, height = size
            out.append(
                {
                    "id": f"box{i}",
                    "type": "rectanglelabels",
                    "to_name": config["field"],
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {
                        "x": b["x"] * 100.0 / width,
                        "y": b["y"] * 100.0 / height,
                        "width": b["width"] * 100.0 / width,
                        "height": b["height"] * 100.0 / height,
                        "rotation": 0,
                        "rectanglelabels": [b["label"]],
                    },
                }
            )
        return out

    def from_label_studio_result(self, result: list, config: dict, data: Any) -> list[dict]:
        """The boxes of a ``result`` list (its ``rectanglelabels`` regions; others ignored), in
        pixels of each region's ``original_width``/``original_height`` (else the data's)."""
        size = image_size(data, config)
        out = []
        for i, region in enumerate(result):
            if not isinstance(region, dict) or region.get("type") != "rectanglelabels":
                continue
            v = region.get("value")
            if not isinstance(v, dict):
                raise ValueError(f"result[{i}].value must be an object {{x, y, width, height}}")
            labels = v.get("rectanglelabels")
            if not isinstance(labels, list) or len(labels) != 1:
                raise ValueError(f"result[{i}] must hold exactly one label in rectanglelabels")
            if v.get("rotation") not in (None, 0, 0.0):
                raise ValueError(f"result[{i}] is rotated; only upright boxes are supported")
            width = _int_size(region.get("original_width")) or (size[0] if size else None)
            height = _int_size(region.get("original_height")) or (size[1] if size else None)
            if not width or not height:
                raise ValueError(f"result[{i}] has no original_width/original_height")
            px = [_number(v.get(c), f"result[{i}].value.{c}") for c in COORDS]
            out.append(
                {
                    "x": round(px[0] * width / 100.0, 2),
                    "y": round(px[1] * height / 100.0, 2),
                    "width": round(px[2] * width / 100.0, 2),
                    "height": round(px[3] * height / 100.0, 2),
                    "label": labels[0],
                }
            )
        return out

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """After ``needed`` votes: the merged boxes (clusters drawn by ≥ ``consensus_threshold``
        of the annotators) and the agreement (mean pairwise F1 at IoU ≥ 0.5).
        Agreement ≥ ``consensus_threshold``: completed (``consensus``); else disputed (expert
        review), or one more annotator up to ``max_annotators``, then the merged boxes
        (``majority``)."""
        if len(votes) < needed:
            return Decision("pending", needed)
        threshold = quality["consensus_threshold"]
        merged, stats = _merge(votes, threshold)
        agreement = 1.0 if len(votes) < 2 else stats["f1"]
        final = [{k: b[k] for k in (*COORDS, "label")} for b in merged]
        if agreement >= threshold - 1e-12:
            return Decision("completed", needed, final, "consensus", agreement)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, agreement)
        if needed < quality["max_annotators"]:
            return Decision("pending", needed + 1, None, None, agreement)
        return Decision("completed", needed, final, "majority", agreement)

    def summarize(self, votes: list[Any], config: dict | None) -> dict[str, Any]:
        """``{"merged": [box + "support"], "n_boxes": [boxes per vote], "f1", "mean_iou"}``:
        the boxes drawn by at least half of the annotators (IoU ≥ 0.5), each vote's box count, and the mean pairwise F1 and IoU of matched boxes.
        The review page draws the votes over the image and pre-draws ``merged``."""
        boxes = [_boxes(v) or [] for v in votes]
        if not boxes:
            return {"merged": [], "n_boxes": [], "f1": None, "mean_iou": None}
        merged, stats = _merge(boxes, 0.5)
        return {
            "merged": merged,
            "n_boxes": [len(b) for b in boxes],
            "f1": round(stats["f1"], 6) if len(boxes) > 1 else 1.0,
            "mean_iou": round(stats["mean_iou"], 6) if len(boxes) > 1 else 1.0,
        }

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: dict) -> dict[str, pa.Array]:
        """``gold``/``label``/``expert_label`` (``list<struct>`` boxes), ``agreement`` (mean
        pairwise F1 at IoU ≥ 0.5; 1.0 for one vote), ``confidence`` (mean support
        of the final boxes; for a final ``[]``, the share of empty votes), ``objects`` (the
        final boxes in Hugging Face detection form, null without a final value) and the
        image's ``width``/``height`` (int64, null when unknown)."""
        from ..consensus.boxes import box_agreement

        n = votes.n_tasks
        values = json_values(votes.values)
        finals = [_boxes(v) for v in json_values(votes.final)]
        bounds = np.concatenate([[0], np.cumsum(votes.n_votes)]).astype("int64")
        agreement = np.full(n, np.nan)
        confidence = np.full(n, np.nan)
        objects: list[dict | None] = []
        for t in range(n):
            answers = [_boxes(v) or [] for v in values[bounds[t] : bounds[t + 1]]]
            final = finals[t]
            if len(answers) == 1:
                agreement[t] = 1.0
            elif answers:
                agreement[t] = box_agreement(answers, IOU)["f1"]
            if final is None:
                objects.append(None)
                continue
            support, conf = box_support(final, answers, IOU)
            if answers:
                confidence[t] = (
                    float(np.mean(support)) if final else sum(not a for a in answers) / len(answers)
                )
            objects.append(
                {
                    "bbox": [[b[c] for c in COORDS] for b in final],
                    "category": [b["label"] for b in final],
                    "area": [round(b["width"] * b["height"], 4) for b in final],
                    "support": support,
                    "confidence": conf,
                }
            )
        sizes = [
            image_size(orjson.loads(d), config) if d else None
            for d in (python_texts(votes.data) if votes.data is not None else [None] * n)
        ]
        mask = np.array([s is None for s in sizes], dtype=bool)
        return {
            "gold": pa.array([_boxes(v) for v in json_values(votes.gold)], VALUE),
            "label": pa.array(finals, VALUE),
            "agreement": pa.array(agreement, pa.float64(), from_pandas=True),
            "confidence": pa.array(confidence, pa.float64(), from_pandas=True),
            "objects": pa.array(objects, OBJECTS),
            "width": pa.array([s[0] if s else 0 for s in sizes], pa.int64(), mask=mask),
            "height": pa.array([s[1] if s else 0 for s in sizes], pa.int64(), mask=mask),
            "expert_label": pa.array([_boxes(v) for v in json_values(votes.expert)], VALUE),
        }

    def long_label(self, values: pa.Array, config: dict) -> pa.Array:
        return pa.array([_boxes(v) for v in json_values(values)], VALUE)

    def features(self, config: dict) -> dict[str, Any]:
        """Boxes as ``List({x, y, width, height: float64, label: string})``; ``objects`` as in
        Hugging Face detection datasets (``category`` a ``ClassLabel`` of the labels);
        ``width``/``height`` int64."""
        import datasets

        f64 = datasets.Value("float64")
        box = datasets.List({**{c: f64 for c in COORDS}, "label": datasets.Value("string")})
        return {
            "label": box,
            "gold": box,
            "expert_label": box,
            "objects": {
                "bbox": datasets.List(datasets.List(f64, length=4)),
                "category": datasets.List(datasets.ClassLabel(names=config["labels"])),
                "area": datasets.List(f64),
                "support": datasets.List(f64),
                "confidence": datasets.List(f64),
            },
            "width": datasets.Value("int64"),
            "height": datasets.Value("int64"),
        }

    # -- client side (project.to_pandas) ---------------------------------------------------
    def aggregate(
        self, votes: pd.DataFrame, method: Any, config: Any, **params: Any
    ) -> pd.DataFrame:
        """Across-task re-aggregation of the annotators' ``votes`` (columns task, worker, label
        = box lists): ``auto`` = :data:`~cynaps_data.consensus.boxes_model.DEFAULT_BOX_METHOD`
        (``reliability``, :class:`~cynaps_data.consensus.boxes_model.BoxReliability`: per-
        annotator recall, false-box rate and edge noise by EM), ``matching`` =
        :class:`~cynaps_data.consensus.boxes_model.BoxMatching` (the clustering baseline), or
        one of those objects; ``params`` go to it. Columns per task with votes:
        ``<prefix>_label`` (list of box dicts), ``<prefix>_objects`` (as ``objects``, with the
        model's per-box ``support`` and ``confidence``) and ``<prefix>_confidence`` (float64,
        mean box confidence; NaN without boxes)."""
        import pandas as pd

        from ..consensus.boxes_model import BOX_METHODS, DEFAULT_BOX_METHOD

        key = method_prefix(method)
        classes = {"auto": BOX_METHODS[DEFAULT_BOX_METHOD], **BOX_METHODS}
        if isinstance(method, tuple(BOX_METHODS.values())):
            model = method.set_params(**params) if params else method
        elif not isinstance(method, str) or key not in classes:
            raise ValidationError(
                f"unknown method {method!r} for boxes; choose one of {list(classes)} "
                "or a BoxReliability / BoxMatching object",
                param="method",
            )
        else:
            try:
                model = classes[key](**params)
            except (TypeError, ValidationError) as exc:
                raise ValidationError(
                    f"bad parameters for {classes[key].__name__}: {exc}", param="method"
                ) from None
        columns = [f"{key}_label", f"{key}_objects", f"{key}_confidence"]
        tasks = pd.Index(pd.unique(votes["task"]) if len(votes) else [], name="task")
        if votes.empty:
            out = pd.DataFrame(
                {c: pd.Series(dtype="float64" if c == columns[2] else object) for c in columns}
            )
            out.index.name = "task"
            return out
        return fit_frame(model, votes, tasks, columns)

    def to_pandas_columns(self, frame: pd.DataFrame, config: Any) -> pd.DataFrame:
        """``label``/``gold``/``expert_label``: lists of box dicts (None where none);
        ``objects``: one column of dicts of lists (the export's ``objects.<key>`` columns put
        back together; None where no final value); ``width``/``height``: ``Int64``."""
        import pandas as pd

        for column in ("label", "gold", "expert_label"):
            if column in frame.columns:
                frame[column] = pd.Series(
                    [_plain_boxes(v) for v in frame[column].tolist()],
                    index=frame.index,
                    dtype=object,
                )
        parts = [f"objects.{k}" for k in OBJECT_KEYS]
        if all(p in frame.columns for p in parts):
            at = list(frame.columns).index(parts[0])
            rows = zip(*(frame[p].tolist() for p in parts), strict=True)
            objects = [
                None
                if r[0] is None
                else {k: _plain(v) for k, v in zip(OBJECT_KEYS, r, strict=True)}
                for r in rows
            ]
            frame = frame.drop(columns=parts)
            frame.insert(at, "objects", pd.Series(objects, index=frame.index, dtype=object))
        for column in ("width", "height"):
            if column in frame.columns:
                frame[column] = frame[column].astype("Int64")
        return frame

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        return resources.files(__package__).joinpath("widgets/boxes.js")

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: dict) -> Any:
        """See :func:`cynaps_data.types._boxes_sandbox.pseudo_truth`."""
        from ._boxes_sandbox import pseudo_truth

        return pseudo_truth(data_json, config)

    def simulate(
        self, truth: Any, config: dict, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        """See :func:`cynaps_data.types._boxes_sandbox.simulate`."""
        from ._boxes_sandbox import simulate

        return simulate(truth, config, accuracy, rng, data)


TYPE = Boxes()
__all__ = ["IOU", "TYPE", "Boxes", "image_size", "to_coco"]
