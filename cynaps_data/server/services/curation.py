"""Curation: send chosen tasks back for more annotator judgements.

``reopen`` raises each task's ``needed`` to ``n_judgements + n`` and puts it back to
``pending`` (its final label is cleared until the policy decides again); a completed or
in-review project becomes ``active`` again (a paused one stays paused). Billing: the task is
un-charged until it is final again; at finalisation only its judgements not billed before are
charged (``billing.charge_task``), so the customer pays for the extra judgements once and each
annotator is paid once per judgement. The worst-case cost of the extra judgements (plus the
expert fee when expert review is on) is moved from the customer's balance to the project's
deposit hold up front (``billing.reserve_for_reopen``), or the call fails with 402 and changes
nothing; the unused part is refunded with the deposit.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from ..db import Database
from ..problems import Problem, invalid, invalid_state
from ..tables import projects, tasks
from . import billing, outbox
from . import projects as project_service

MAX_TASKS = 100_000
MAX_JUDGEMENTS_PER_TASK = 50
REOPEN_STATES = frozenset({"active", "paused", "review", "completed"})


def _parse(body: Any) -> tuple[list[int], int]:
    if not isinstance(body, dict):
        raise invalid('The body must be {"task_ids": [...], "n": int}', param="task_ids")
    unknown = sorted(set(body) - {"task_ids", "n"})
    if unknown:
        raise invalid(f"Unknown field {unknown[0]!r}; send 'task_ids' and 'n'", param=unknown[0])
    ids = body.get("task_ids")
    if not isinstance(ids, list) or not ids:
        raise invalid("task_ids must be a non-empty list of task ids", param="task_ids")
    if len(ids) > MAX_TASKS:
        raise invalid(f"at most {MAX_TASKS} task ids per call", param="task_ids")
    for i, t in enumerate(ids):
        if isinstance(t, bool) or not isinstance(t, int):
            raise invalid(
                f"task_ids[{i}] must be an integer task id, got {t!r}", param=f"task_ids[{i}]"
            )
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_JUDGEMENTS_PER_TASK:
        raise invalid(f"n must be an integer from 1 to {MAX_JUDGEMENTS_PER_TASK}", param="n")
    return list(dict.fromkeys(ids)), n


def reopen(db: Database, owner_id: str, project_id: str, body: Any) -> dict:
    """Reopen ``task_ids`` for ``n`` more judgements each; returns a summary."""
    ids, n = _parse(body)
    now = time.time()
    with db.write() as conn:
        project = project_service.load(conn, owner_id, project_id, lock=True)
        if project.state not in REOPEN_STATES:
            raise invalid_state(
                f"Tasks can be sent back only once the project has started (it is {project.state!r})."
            )
        found = {}
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            for row in conn.execute(
                sa.select(tasks.c.id, tasks.c.n_judgements, tasks.c.needed).where(
                    tasks.c.project_id == project_id, tasks.c.id.in_(chunk)
                )
            ):
                found[row.id] = row
        missing = [t for t in ids if t not in found]
        if missing:
            raise Problem(
                404,
                "resource_missing",
                f"No such task in project {project_id}: {missing[0]}",
                param="task_ids",
            )
        too_many = [t for t in ids if found[t].n_judgements + n > MAX_JUDGEMENTS_PER_TASK]
        if too_many:
            raise invalid(
                f"task {too_many[0]} would need more than {MAX_JUDGEMENTS_PER_TASK} judgements",
                param="n",
            )
        cost = billing.reserve_for_reopen(conn, project, len(ids), n)  # 402 if not covered
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            conn.execute(
                tasks.update()
                .where(tasks.c.project_id == project_id, tasks.c.id.in_(chunk))
                .values(
                    # n more than it has or was already going to get (a pending task's
                    # quota is never lowered by asking for more)
                    needed=sa.case(
                        (tasks.c.needed > tasks.c.n_judgements, tasks.c.needed),
                        else_=tasks.c.n_judgements,
                    )
                    + n,
                    status="pending",
                    final_label=None,
                    label_source=None,
                    stop_reason=None,
                    charged=False,
                    released=False,
                    updated_at=now,
                )
            )
        state = project.state
        if state in ("review", "completed"):
            state = "active"
            outbox.state_changing(conn, project_id, state)  # webhook event, same transaction
            conn.execute(
                projects.update()
                .where(projects.c.id == project_id)
                .values(state=state, updated_at=now)
            )
    return {
        "object": "reopen_result",
        "project_id": project_id,
        "reopened": len(ids),
        "judgements_requested": len(ids) * n,
        "max_cost": f"{cost / 100:.2f}",
        "currency": "Credits",
        "project_state": state,
    }
