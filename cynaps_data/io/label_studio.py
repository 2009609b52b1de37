"""Label Studio's JSON export shape, both ways (observed on Label Studio 1.23).

:func:`from_records` turns our seed-shaped JSON export into Label Studio tasks: one task per
record with ``data``, one ``annotation`` per judgement (``completed_by`` = our worker id,
``result`` = one region in the shape of the project's annotation type (its ``to_label_studio``,
``from_label_studio`` hooks), ``ground_truth`` for the expert's verdict, ``lead_time`` =
duration, ISO ``created_at``), the platform's final label as a ``prediction``
(``model_version = "cynaps-consensus"``) and the consensus metadata under ``meta.cynaps``.

:func:`to_import_items` goes the other way: Label Studio tasks (theirs or ours) become import
items for ``POST /v1/projects/{id}/import`` — tasks *with* their judgements. Cancelled
annotations and drafts are skipped; the task ``id`` becomes the ``external_id`` so re-importing
the same file creates nothing new.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from ..errors import ValidationError

FROM_NAME = "label"
PREDICTION_MODEL = "cynaps-consensus"


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(text: Any) -> float | None:
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _to_name(data: dict) -> str:
    return next(iter(data), "text")


def _type(project: dict | None) -> tuple[Any, Any]:
    """The project's annotation type and label config (the default type without a project)."""
    from ..types import DEFAULT_TYPE, get_type

    project = project or {}
    return get_type(project.get("annotation_type") or DEFAULT_TYPE), project.get("labels")


def _region(
    value: Any, to_name: str, from_name: str, atype: Any, config: Any, data: Any = None
) -> list[dict]:
    """The result regions for ``value``, in the shape its annotation type gives: one region, a
    list of them (a value that is several regions, e.g. spans), or the type's whole
    ``label_studio_result`` (regions needing the data; a region naming its own ``to_name``
    keeps it)."""
    many = getattr(atype, "label_studio_result", None)
    regions = (
        many(value, config, data) if many is not None else atype.to_label_studio(value, config)
    )
    regions = regions if isinstance(regions, list) else [regions]
    return [{"from_name": from_name, "to_name": to_name, **r} for r in regions]


def from_records(
    records: list[dict], project: dict | None = None, *, from_name: str = FROM_NAME
) -> list[dict]:
    """Our seed-shaped JSON export as Label Studio's JSON export (list of task dicts)."""
    project_ref = (project or {}).get("id")
    atype, config = _type(project)
    out = []
    annotation_id = 0
    for record in records:
        data = record.get("data") or {}
        to_name = _to_name(data)
        annotations = []
        for j in record.get("judgements", []):
            annotation_id += 1
            created = _iso(j.get("created_at"))
            annotations.append(
                {
                    "id": annotation_id,
                    "completed_by": j["annotator_id"],
                    "result": _region(j["label"], to_name, from_name, atype, config, data),
                    "was_cancelled": False,
                    "ground_truth": j.get("role") == "expert",
                    "created_at": created,
                    "updated_at": created,
                    "lead_time": j.get("duration"),
                    "task": record["id"],
                    "project": project_ref,
                }
            )
        consensus = record.get("consensus") or {}
        predictions = []
        if record.get("annotations"):
            final = record["annotations"][0]["result"]
            predictions.append(
                {
                    "model_version": PREDICTION_MODEL,
                    "score": final.get("agreement"),
                    "result": _region(final["value"], to_name, from_name, atype, config, data),
                }
            )
        out.append(
            {
                "id": record["id"],
                "annotations": annotations,
                "drafts": [],
                "predictions": predictions,
                "data": data,
                "meta": {
                    "cynaps": {
                        **consensus,
                        "external_id": record.get("external_id"),
                        "gold": record.get("gold"),
                    }
                },
                "total_annotations": len(annotations),
                "cancelled_annotations": 0,
                "total_predictions": len(predictions),
                "project": project_ref,
            }
        )
    return out


def load(records: Any) -> list[dict]:
    """Label Studio JSON from a list, a JSON text/bytes or a path to a ``.json`` file."""
    if isinstance(records, (str, Path)) and not str(records).lstrip().startswith("["):
        records = Path(records).read_bytes()
    if isinstance(records, (str, bytes)):
        try:
            records = orjson.loads(records)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"not valid Label Studio JSON: {exc}", param="records") from None
    if not isinstance(records, list):
        raise ValidationError("Label Studio JSON export must be a list of tasks", param="records")
    return records


def _choice(annotation: dict, i: int, j: int, atype: Any, config: Any, data: Any = None) -> Any:
    """The value of the first result region of the project's annotation type (or of the whole
    ``result`` for a type with ``from_label_studio_result``)."""
    many = getattr(atype, "from_label_studio_result", None)
    if many is not None:
        try:
            return many(annotation.get("result") or [], config, data)
        except ValueError as exc:
            raise ValidationError(
                f"records[{i}].annotations[{j}]: {exc}", param=f"records[{i}].annotations[{j}]"
            ) from None
    problems = []
    for k, region in enumerate(annotation.get("result") or []):
        if isinstance(region, dict):
            try:
                return atype.from_label_studio(region, config)
            except ValueError as exc:  # another tag's region, or a bad value of ours
                problems.append(f"result[{k}]: {exc}")
    raise ValidationError(
        f"records[{i}].annotations[{j}] has no {atype.name} result (e.g. 'choices') to import"
        + (f" ({'; '.join(problems[:3])})" if problems else ""),
        param=f"records[{i}].annotations[{j}]",
    )


def to_import_items(records: list[dict], project: dict | None = None) -> list[dict]:
    """Label Studio tasks → import items (``data``, ``external_id``, ``gold``, ``judgements``).

    ``external_id`` is our own ``meta.cynaps.external_id`` when the file came from us, else the
    Label Studio task id; ``gold`` likewise comes back from ``meta.cynaps.gold``.
    """
    atype, config = _type(project)
    items = []
    for i, task in enumerate(records):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ValidationError(
                f"records[{i}] must be a task with a 'data' object", param=f"records[{i}]"
            )
        ours = (task.get("meta") or {}).get("cynaps") or {}
        external = ours.get("external_id") or (
            str(task["id"]) if task.get("id") is not None else None
        )
        judgements = []
        for j, annotation in enumerate(task.get("annotations") or []):
            if annotation.get("was_cancelled"):
                continue
            worker = annotation.get("completed_by")
            if isinstance(worker, dict):  # some exports expand the user
                worker = worker.get("id") or worker.get("email")
            judgements.append(
                {
                    "worker": str(worker),
                    "label": _choice(annotation, i, j, atype, config, task["data"]),
                    "role": "expert" if annotation.get("ground_truth") else "annotator",
                    "created_at": _seconds(annotation.get("created_at")),
                    "duration": annotation.get("lead_time"),
                }
            )
        item = {"data": task["data"], "external_id": external, "judgements": judgements}
        if ours.get("gold") is not None:
            item["gold"] = ours["gold"]
        items.append(item)
    return items
