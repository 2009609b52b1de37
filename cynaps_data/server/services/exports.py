"""Exports. JSON keeps the seed's shape: ``record["annotations"][0]["result"]["value"]`` is the
task's final label; the individual judgements and the consensus metadata are in the record too.

Downloading results releases the escrowed charges to the annotators (once per task).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
import sqlalchemy as sa

from ..db import Database
from ..tables import judgements, tasks
from . import billing
from . import projects as project_service


def _consensus(task: Any, votes: list[dict], labels: list) -> dict:
    annotator_votes = [v["label"] for v in votes if v["role"] == "annotator"]
    counts = Counter(annotator_votes)
    n = len(annotator_votes)
    return {
        "label": orjson.loads(task.final_label) if task.final_label else None,
        "label_source": task.label_source or "none",
        "status": task.status,
        "agreement": task.agreement,
        "n_annotations": n,
        "vote_distribution": {label: counts.get(label, 0) / n for label in labels} if n else {},
        "annotator_ids": [v["annotator_id"] for v in votes if v["role"] == "annotator"],
        "expert_label": next((v["label"] for v in votes if v["role"] == "expert"), None),
    }


def json_records(db: Database, owner_id: str, project_id: str, *, release: bool = True) -> list[dict]:
    """The seed-shaped JSON export of every task, in upload order."""
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        by_task: dict[int, list[dict]] = defaultdict(list)
        for j in conn.execute(
            sa.select(judgements).where(judgements.c.project_id == project_id).order_by(judgements.c.id)
        ):
            by_task[j.task_id].append(
                {
                    "annotator_id": j.annotator_id,
                    "role": j.role,
                    "label": orjson.loads(j.value),
                    "duration": j.duration,
                    "created_at": j.created_at,
                }
            )
        records = []
        for task in conn.execute(
            sa.select(tasks).where(tasks.c.project_id == project_id).order_by(tasks.c.id)
        ):
            votes = by_task.get(task.id, [])
            consensus = _consensus(task, votes, project.labels)
            annotations = []
            if consensus["label"] is not None:
                annotations.append(
                    {
                        "type": project.annotation_type,
                        "result": {"value": consensus["label"], **{k: consensus[k] for k in ("label_source", "agreement")}},
                        "ground_truth": consensus["label_source"] == "expert",
                    }
                )
            records.append(
                {
                    "id": task.id,
                    "external_id": task.external_id,
                    "data": orjson.loads(task.data),
                    "gold": orjson.loads(task.gold) if task.gold else None,
                    "annotations": annotations,
                    "judgements": votes,
                    "consensus": consensus,
                }
            )
    if release:
        with db.write() as conn:
            project = project_service.load(conn, owner_id, project_id, lock=True)
            billing.release_escrow(conn, project)
    return records
