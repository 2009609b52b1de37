"""Judgements: storing one (the only writer of ``judgements`` rows), and an annotator's submit.

:func:`store` is the one function that writes judgement rows: the annotator's submit here, the
expert's decision (``review.py``) and imported judgements (``imports.py``) all call it. After an
annotator's judgement the task's vote summary and consensus decision come from ``votes.py``
(through the project's annotation type); a finalised task is charged through ``billing``.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa

from ...types import Decision, get_type
from .. import lanes
from ..db import Database
from ..problems import Problem, invalid
from ..tables import projects
from . import billing, outbox, overlap
from . import projects as project_service
from . import votes as vote_service
from .accounts import Principal
from .assignment import assign_next, not_assigned, require_role
from .fastsql import Raw, json_value
from .quality import covered_judgements, is_adaptive

MAX_DURATION = 7 * 24 * 3600.0
ORIGINS = ("platform", "imported")

_RELEASE_SQL = "DELETE FROM assignments WHERE task_id = :task AND annotator_id = :me"
# (expires_at, project_id, needed, n_judgements, state, annotation_type, labels, quality_settings,
#  owner_id, data)
_SUBMIT_SQL = (
    "SELECT a.expires_at, t.project_id, t.needed, t.n_judgements, p.state, p.annotation_type, p.labels,"
    " p.quality_settings, p.owner_id, t.data, t.status FROM assignments a"
    " JOIN tasks t ON t.id = a.task_id"
    " JOIN projects p ON p.id = t.project_id WHERE a.task_id = :task AND a.annotator_id = :me"
)
_VOTES_SQL = "SELECT value FROM judgements WHERE task_id = :task AND role = 'annotator' ORDER BY id"
_UPDATE_TASK_SQL = (
    "UPDATE tasks SET n_judgements = :n, needed = :needed, status = :status,"
    " agreement = :agreement, final_label = :final, label_source = :source, updated_at = :now,"
    " stop_reason = :stop,"
    " vote_values = vote_values || :vote_value, vote_workers = vote_workers || :vote_worker"
    " WHERE id = :task"
)
_INSERT_SQL = (
    "INSERT INTO judgements (task_id, project_id, annotator_id, role, value, duration, created_at,"
    " billed, paid, origin) VALUES (:task, :project, :worker, :role, :value, :duration, :created,"
    " :settled, :settled, :origin)"
)
LOCK_TASK_SQL = "SELECT id FROM tasks WHERE id = :task FOR UPDATE"
PENDING_SQL = "SELECT id FROM tasks WHERE project_id = :project AND status = 'pending' LIMIT 1"


class Judgement(NamedTuple):
    """One judgement row: ``value`` is the validated value's JSON text (``orjson.dumps``),
    ``role`` annotator | expert, times in seconds since the epoch."""

    task_id: int
    project_id: str
    worker: str
    role: str
    value: str
    duration: float | None
    created_at: float


def store(conn: Raw | sa.Connection, rows: list[Judgement], origin: str = "platform") -> None:
    """Insert judgement rows in the caller's transaction. ``origin="platform"``: platform work,
    billed when its task is charged and paid on release; ``"imported"``: outside work, never
    billed nor paid (``billed = paid = true`` from the start)."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
    if not rows:
        return
    raw = conn if isinstance(conn, Raw) else Raw(conn)
    settled = origin == "imported"
    params = [
        {
            "task": r.task_id,
            "project": r.project_id,
            "worker": r.worker,
            "role": r.role,
            "value": r.value,
            "duration": r.duration,
            "created": r.created_at,
            "settled": settled,
            "origin": origin,
        }
        for r in rows
    ]
    if len(params) == 1:
        raw.run(_INSERT_SQL, params[0])
    else:
        raw.many(_INSERT_SQL, params)


def lock_task(conn: sa.Connection, task_id: int) -> None:
    """Serialise judgements on one task until commit (PostgreSQL; SQLite's write transaction
    already holds the database lock), so concurrent submits each see the other's vote."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(LOCK_TASK_SQL), {"task": task_id})


def parse_duration(body: dict) -> float | None:
    duration = body.get("duration")
    if duration is None:
        return None
    if (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not 0 <= duration <= MAX_DURATION
    ):
        raise invalid(f"duration must be seconds between 0 and {MAX_DURATION:g}", param="duration")
    return float(duration)


def settle_if_needed(db: Raw, project_id: str, state: str) -> None:
    """Run the project-state check only when it can change something (no pending task left).

    ``projects.refresh_state`` keeps an active project active while any task is pending, so
    the full count is skipped on the hot path.
    """
    if state == "active" and db.run(PENDING_SQL, {"project": project_id}).fetchone() is not None:
        return
    project = db.conn.execute(sa.select(projects).where(projects.c.id == project_id)).one()
    project_service.settle(db.conn, project)


# (value, status, annotation_type, labels) of the caller's own judgement on a task
_MY_JUDGEMENT_SQL = (
    "SELECT j.value, t.status, p.annotation_type, p.labels, t.data FROM judgements j"
    " JOIN tasks t ON t.id = j.task_id JOIN projects p ON p.id = t.project_id"
    " WHERE j.task_id = :task AND j.annotator_id = :me AND j.role = 'annotator'"
)


def _replay(
    db: Raw,
    principal: Principal,
    task_id: int,
    body: dict,
    next_ttl: float | None,
    now: float,
    project_id: str | None,
) -> dict | None:
    """The answer to a retried submission (one with an ``Idempotency-Key``), or ``None``.

    Submitting is idempotent per ``(task, annotator)``, so the ``Idempotency-Key`` middleware
    leaves judgements to this instead of storing responses: the same label again on a task the
    caller already judged answers as the first time did (with the task's status now, and the
    caller's live assignment as ``next``) and records nothing; another label is refused as not
    assigned.
    """
    mine = db.run(_MY_JUDGEMENT_SQL, {"task": task_id, "me": principal.account_id}).fetchone()
    if mine is None:
        return None
    stored, status, annotation_type, labels, data = mine
    try:
        value = get_type(annotation_type).validate_value(
            body.get("label"), json_value(labels), json_value(data)
        )
    except ValueError:
        return None
    if orjson.dumps(value).decode() != stored:
        return None
    result = {"object": "judgement", "task_id": task_id, "label": value, "task_status": status}
    if next_ttl is not None:
        result["next"] = assign_next(db, principal, next_ttl, now, project_id)
    return result


class ChargedProject:
    """What ``billing.charge_task`` reads of a project."""

    __slots__ = ("id", "owner_id", "annotation_type")

    def __init__(self, id: str, owner_id: str, annotation_type: str) -> None:
        self.id, self.owner_id, self.annotation_type = id, owner_id, annotation_type


def submit(
    db: Database,
    principal: Principal,
    task_id: int,
    body: Any,
    *,
    next_ttl: float | None = None,
    project_id: str | None = None,
    inline: bool = False,
    retry: bool = False,
) -> dict:
    """Record an annotator's judgement on an assigned task and apply the consensus policy.

    With ``next_ttl`` the annotator's next task is assigned in the same transaction and
    returned under ``"next"`` (``None`` when the queue is empty): one round trip per task.
    ``inline``: see :func:`lanes.hot_write` (may raise :class:`WouldBlock`). ``retry``: the request
    carries an ``Idempotency-Key``, so a repeat of a submission that went through is answered
    as the first time (:func:`_replay`); without one, a repeat is refused (409 ``not_assigned``).
    """
    require_role(principal, "annotator")
    if not isinstance(body, dict):
        raise invalid("The body must be an object with a 'label'", param="label")
    unknown = sorted(set(body) - {"label", "duration"})
    if unknown:
        raise invalid(
            f"Unknown field {unknown[0]!r}; send 'label' and optionally 'duration'",
            param=unknown[0],
        )
    duration = parse_duration(body)
    me = principal.account_id
    now = time.time()
    with lanes.hot_write(db, inline) as raw:
        if raw.pg:
            raw.run(LOCK_TASK_SQL, {"task": task_id})
        row = raw.run(_SUBMIT_SQL, {"task": task_id, "me": me}).fetchone()
        # (Raising rolls the transaction back; expired rows are swept by the next assignment.)
        if row is not None and row[4] in ("cancelled", "completed"):
            raise Problem(
                409,
                "project_closed",
                f"Project {row[1]} is {row[4]}; it takes no more judgements.",
                type="invalid_state_error",
            )
        if row is None and retry:
            replay = _replay(raw, principal, task_id, body, next_ttl, now, project_id)
            if replay is not None:
                return replay
        if row is None or row[0] <= now:
            raise not_assigned(task_id)
        (
            expires_at,
            task_project,
            needed,
            n_judgements,
            state,
            annotation_type,
            labels,
            quality,
            owner,
            data,
            task_status,
        ) = row
        if task_status != "pending":  # decided while this assignment was held (e.g. reopen)
            raise Problem(
                409,
                "task_closed",
                f"Task {task_id} is {task_status}; it takes no more judgements.",
                type="invalid_state_error",
            )
        atype = get_type(annotation_type)
        try:
            value = atype.validate_value(body.get("label"), json_value(labels), json_value(data))
        except ValueError as exc:
            raise invalid(str(exc), param="label") from None
        raw.run(_RELEASE_SQL, {"task": task_id, "me": me})
        encoded = orjson.dumps(value).decode()
        store(raw, [Judgement(task_id, task_project, me, "annotator", encoded, duration, now)])
        quality = json_value(quality)
        funded = True
        if is_adaptive(quality):  # the online skill model decides (issue 18)
            config = json_value(labels)
            outcome = overlap.after_judgement(
                raw, atype, config, quality, task_project, task_id, needed, now
            )
            n_votes, decision = len(outcome.values), outcome.decision
        elif n_judgements + 1 < needed:  # still short of its quota: nothing to decide
            n_votes, decision = n_judgements + 1, Decision("pending", needed)
        else:
            votes = [orjson.loads(v[0]) for v in raw.run(_VOTES_SQL, {"task": task_id}).fetchall()]
            n_votes = len(votes)
            config = json_value(labels)
            decision = vote_service.decide(atype, votes, quality, needed, config)
            # judgements past what the deposit covers (and past any reopen's own reserve)
            extra = decision.needed - max(needed, covered_judgements(quality))
            if (
                decision.status == "pending"
                and extra > 0
                and not billing.reserve_escalation(
                    raw.conn, ChargedProject(task_project, owner, annotation_type), task_id, extra
                )
            ):  # escalated past the deposit and the balance cannot pay: finalise instead
                decision = vote_service.without_escalation(atype, votes, quality, needed, config)
                funded = False
        raw.run(
            _UPDATE_TASK_SQL,
            {
                "task": task_id,
                "n": n_votes,
                "needed": decision.needed,
                "status": decision.status,
                "agreement": decision.agreement,
                "final": None
                if decision.final_label is None
                else orjson.dumps(decision.final_label).decode(),
                "source": decision.label_source,
                "stop": vote_service.stop_reason(decision, quality, funded),
                "now": now,
                **vote_service.appended(encoded, me),
            },
        )
        result = {
            "object": "judgement",
            "task_id": task_id,
            "label": value,
            "task_status": decision.status,
        }
        if next_ttl is not None:
            result["next"] = assign_next(raw, principal, next_ttl, now, project_id)
        # the ledger last: on PostgreSQL the charge locks the customer's account until commit,
        # and every finalising submission of the account's projects queues on that lock
        if decision.status != "pending":
            outbox.task_decided(raw.conn, owner, task_project, task_id, decision.status)
            if decision.status == "completed":
                charged = ChargedProject(task_project, owner, annotation_type)
                billing.charge_task(raw.conn, charged, task_id, n_votes, expert=False)
            settle_if_needed(raw, task_project, state)
    return result
