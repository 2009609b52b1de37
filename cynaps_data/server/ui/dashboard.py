"""Read-only project dashboard for the customer: progress, agreement histogram, annotators.

Reads only (it never releases escrow the way an export does) and is scoped to the owner: another
account's project is a 404.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from ...types import get_type
from ..db import Database
from ..services import overlap
from ..services import projects as project_service
from ..tables import accounts, judgements, tasks

BINS = 10


def summary(db: Database, owner_id: str, project_id: str) -> dict:
    """``status`` (as GET …/status), ``agreement_histogram`` (``BINS`` equal bins over [0, 1]
    of the tasks that have an agreement), ``final_labels`` (count per label) and
    ``annotators`` (judgements per member, sandbox workforce included and flagged ``simulated``;
    in an adaptive project also ``accuracy``, the skill model's estimate) and ``stopping``: the
    tasks counted by how many annotator judgements they took and why they stopped
    (``[{"n_judgements", "stop_reason", "tasks"}]``, ``stop_reason`` null while collecting).
    """
    status = project_service.status(db, owner_id, project_id)
    with db.read() as conn:
        agreements = (
            conn.execute(
                sa.select(tasks.c.agreement).where(
                    tasks.c.project_id == project_id, tasks.c.agreement.is_not(None)
                )
            )
            .scalars()
            .all()
        )
        finals = conn.execute(
            sa.select(tasks.c.final_label, sa.func.count())
            .where(tasks.c.project_id == project_id, tasks.c.final_label.is_not(None))
            .group_by(tasks.c.final_label)
        ).all()
        people = conn.execute(
            sa.select(
                accounts.c.id,
                accounts.c.name,
                accounts.c.simulated,
                judgements.c.role,
                sa.func.count(),
            )
            .join(accounts, accounts.c.id == judgements.c.annotator_id)
            .where(judgements.c.project_id == project_id)
            .group_by(accounts.c.id, accounts.c.name, accounts.c.simulated, judgements.c.role)
            .order_by(sa.func.count().desc(), accounts.c.name)
        ).all()
        stopping = conn.execute(
            sa.select(tasks.c.n_judgements, tasks.c.stop_reason, sa.func.count())
            .where(tasks.c.project_id == project_id)
            .group_by(tasks.c.n_judgements, tasks.c.stop_reason)
            .order_by(tasks.c.n_judgements, tasks.c.stop_reason)
        ).all()
        project = project_service.load(conn, owner_id, project_id)
        skills = {
            s["annotator_id"]: s["accuracy"]
            for s in overlap.skills_table(
                conn, get_type(project.annotation_type), project.labels, project_id
            )
        }
    counts = [0] * BINS
    for value in agreements:
        counts[min(int(value * BINS), BINS - 1)] += 1
    labels: dict[str, int] = {}
    for encoded, n in finals:
        label = orjson.loads(encoded)
        key = label if isinstance(label, str) else orjson.dumps(label).decode()
        labels[key] = labels.get(key, 0) + int(n)
    return {
        "object": "project_dashboard",
        "status": status,
        "agreement_histogram": {
            "edges": [i / BINS for i in range(BINS + 1)],
            "counts": counts,
            "mean": sum(agreements) / len(agreements) if agreements else None,
        },
        "final_labels": labels,
        "annotators": [
            {
                "id": pid,
                "name": name,
                "simulated": bool(sim),
                "role": role,
                "judgements": int(n),
                **({"accuracy": skills[pid]} if role == "annotator" and pid in skills else {}),
            }
            for pid, name, sim, role, n in people
        ],
        "stopping": [
            {"n_judgements": int(k), "stop_reason": reason, "tasks": int(n)}
            for k, reason, n in stopping
        ],
    }
