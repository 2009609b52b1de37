"""Adaptive overlap on the platform (issue 18): the project's online skill model in the database,
and an adaptive task's decision, credit and queue place after each judgement.

Which projects: ``quality_settings.mode == "adaptive"`` (``quality.py``), for annotation types with
the optional ``adaptive_classes(config)`` hook (``types/base.py``); any other type is refused at
project creation (422 naming ``quality_settings.mode``). Nothing here asks which type a project
has: answers are matched to the type's classes by their JSON text.

Stored state (migration 0009):

- ``annotator_skills``: per ``(project_id, annotator_id)``, ``counts`` the JSON ``k × k``
  confusion counts (rows: true class, columns: answer; ``k`` = the type's classes) and
  ``n_judgements`` the judgements counted in them;
- ``tasks.skill_credit``: JSON list of ``k`` floats, the class distribution the task's voters
  are credited with (its posterior; one-hot for gold or an expert's verdict);
- ``tasks.queue_order``: ``-gain`` (bits) of the task's next judgement, so the candidate query
  (ascending, then id) hands out first the started tasks whose next judgement is worth most,
  then fresh tasks (``0``) in id order.

The maths is :mod:`cynaps_data.consensus.online`. Locking: every call runs inside the caller's
write transaction after the task row is locked; the voters' skill rows are created if missing
and locked in annotator-id order (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction
holds the database), before any ledger lock, so two submits never wait on each other in a cycle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from ...consensus import online
from ...types import AnnotationType, Decision
from ..problems import invalid
from . import votes as vote_service
from .fastsql import Raw
from .quality import is_adaptive

_ENSURE_SQL = (
    "INSERT INTO annotator_skills (project_id, annotator_id, counts, n_judgements, updated_at)"
    " VALUES (:project, :worker, :counts, 0, :now)"
    " ON CONFLICT (project_id, annotator_id) DO NOTHING"
)
_SAVE_SQL = (
    "UPDATE annotator_skills SET counts = :counts, n_judgements = n_judgements + :added,"
    " updated_at = :now WHERE project_id = :project AND annotator_id = :worker"
)
_TASK_SQL = "SELECT gold, skill_credit FROM tasks WHERE id = :task"
_VOTES_SQL = (
    "SELECT annotator_id, value FROM judgements WHERE task_id = :task AND role = 'annotator'"
    " ORDER BY id"
)
_STORE_TASK_SQL = "UPDATE tasks SET skill_credit = :credit, queue_order = :order WHERE id = :task"


class Outcome(NamedTuple):
    """An adaptive task after a judgement: the policy's ``decision`` (``votes.decide``), the
    posterior ``confidence`` and the ``values`` of its votes (in order)."""

    decision: Decision
    confidence: float
    values: list[Any]


def classes_of(atype: AnnotationType, config: Any) -> list[Any] | None:
    """The type's answer space for adaptive overlap, or ``None`` when it does not support it."""
    hook = getattr(atype, "adaptive_classes", None)
    return None if hook is None else list(hook(config))


def check_supported(atype: AnnotationType, config: Any, quality: dict) -> None:
    """At project creation: a 422 when ``quality`` asks for adaptive overlap and the type cannot
    run it (no ``adaptive_classes`` hook, or more classes than the model takes)."""
    if not is_adaptive(quality):
        return
    classes = classes_of(atype, config)
    if classes is None:
        raise invalid(
            f"Annotation type {atype.name!r} does not support adaptive overlap "
            "(mode 'adaptive' needs a type with a finite answer space, such as classification); "
            "use mode 'fixed'",
            param="quality_settings.mode",
        )
    if len(classes) > online.MAX_CLASSES:
        raise invalid(
            f"Adaptive overlap takes at most {online.MAX_CLASSES} classes; this config has "
            f"{len(classes)}. Use mode 'fixed'",
            param="quality_settings.mode",
        )


def _positions(classes: Sequence[Any]) -> dict[str, int]:
    return {orjson.dumps(c).decode(): i for i, c in enumerate(classes)}


def _counts(text: str | None, k: int) -> np.ndarray:
    counts = np.asarray(orjson.loads(text), dtype="float64") if text else np.zeros((k, k))
    return counts if counts.shape == (k, k) else np.zeros((k, k))


def _lock_skills(raw: Raw, project_id: str, workers: list[str], k: int, now: float) -> dict:
    """The skill counts of ``workers`` (created if missing), locked for this transaction."""
    zero = orjson.dumps(np.zeros((k, k)), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    ordered = sorted(set(workers))
    for w in ordered:
        raw.run(_ENSURE_SQL, {"project": project_id, "worker": w, "counts": zero, "now": now})
    names = {f"w{i}": w for i, w in enumerate(ordered)}
    sql = (
        "SELECT annotator_id, counts FROM annotator_skills WHERE project_id = :project"
        f" AND annotator_id IN ({', '.join(':' + n for n in names)}) ORDER BY annotator_id"
    ) + (" FOR UPDATE" if raw.pg else "")
    rows = raw.run(sql, {"project": project_id, **names}).fetchall()
    return {w: _counts(c, k) for w, c in rows}


def _save(raw: Raw, project_id: str, skills: dict, added: dict[str, int], now: float) -> None:
    for w in sorted(skills):
        counts = orjson.dumps(np.round(skills[w], 9), option=orjson.OPT_SERIALIZE_NUMPY).decode()
        raw.run(
            _SAVE_SQL,
            {
                "counts": counts,
                "added": added.get(w, 0),
                "now": now,
                "project": project_id,
                "worker": w,
            },
        )


def _credit_text(credit: np.ndarray) -> str:
    return orjson.dumps(np.round(credit, 9), option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _added(voters: list[tuple[str, int]], first_new: int) -> dict[str, int]:
    return {w: 1 for w, _ in voters[first_new:]}


def _old_credit(text: str | None, k: int) -> np.ndarray | None:
    old = np.asarray(orjson.loads(text), dtype="float64") if text else None
    return old if old is not None and old.shape == (k,) else None


def after_judgement(
    raw: Raw,
    atype: AnnotationType,
    config: Any,
    quality: dict,
    project_id: str,
    task_id: int,
    needed: int,
    now: float | None = None,
) -> Outcome:
    """After an annotator's judgement on a task of an adaptive project (stored, the task row
    locked): the task's posterior from its voters' skills without this task, the voters'
    counts moved to the task's new credit, the task's credit and queue place stored, and the
    policy's decision (``votes.decide`` with the posterior) returned for the caller to write."""
    now = time.time() if now is None else now
    classes = classes_of(atype, config) or []
    position = _positions(classes)
    k = len(classes)
    rows = raw.run(_VOTES_SQL, {"task": task_id}).fetchall()
    gold, old_text = raw.run(_TASK_SQL, {"task": task_id}).fetchone()
    values = [orjson.loads(v) for _, v in rows]
    voters = [(w, position[v]) for w, v in rows if v in position]
    skills = _lock_skills(raw, project_id, [w for w, _ in voters], k, now)
    old_credit = _old_credit(old_text, k)
    # the voters credited before are all but the newest (an imported vote never was: no credit)
    first_new = len(voters) - 1 if old_credit is not None else 0
    counts = [skills[w] for w, _ in voters]
    online.recredit(counts[:first_new], [a for _, a in voters[:first_new]], None, old_credit)
    stack = np.stack(counts) if counts else np.zeros((0, k, k))
    q = online.posterior([a for _, a in voters], stack)
    label_index = int(np.argmax(q))
    confidence = float(q[label_index])
    credit = q
    if gold in position:  # gold: the voters are credited with the truth
        credit = np.zeros(k)
        credit[position[gold]] = 1.0
    online.recredit(counts, [a for _, a in voters], credit)
    _save(raw, project_id, skills, _added(voters, first_new), now)
    decision = vote_service.decide(
        atype, values, quality, needed, config, posterior=(classes[label_index], confidence)
    )
    typical = online.confusion(stack).mean(axis=0) if counts else online.confusion(np.zeros((k, k)))
    order = -online.expected_gain(q, typical) if decision.status == "pending" else 0.0
    raw.run(_STORE_TASK_SQL, {"credit": _credit_text(credit), "order": order, "task": task_id})
    return Outcome(decision, confidence, values)


def after_expert(
    raw: Raw, atype: AnnotationType, config: Any, project_id: str, task_id: int, value: Any
) -> None:
    """An expert's verdict on a task of an adaptive project: its voters are credited with the
    verdict (one-hot) instead of the posterior (gold, when the task has it, stays the truth)."""
    classes = classes_of(atype, config) or []
    position = _positions(classes)
    k = len(classes)
    gold, old_text = raw.run(_TASK_SQL, {"task": task_id}).fetchone()
    truth = gold if gold in position else orjson.dumps(value).decode()
    if truth not in position:
        return
    credit = np.zeros(k)
    credit[position[truth]] = 1.0
    rows = raw.run(_VOTES_SQL, {"task": task_id}).fetchall()
    voters = [(w, position[v]) for w, v in rows if v in position]
    old_credit = _old_credit(old_text, k)
    now = time.time()
    if voters:
        skills = _lock_skills(raw, project_id, [w for w, _ in voters], k, now)
        counts = [skills[w] for w, _ in voters]
        online.recredit(counts, [a for _, a in voters], credit, old_credit)
        _save(
            raw,
            project_id,
            skills,
            _added(voters, len(voters) if old_credit is not None else 0),
            now,
        )
    raw.run(_STORE_TASK_SQL, {"credit": _credit_text(credit), "order": 0.0, "task": task_id})


def skills_table(conn: Any, atype: AnnotationType, config: Any, project_id: str) -> list[dict]:
    """The project's annotators as the skill model sees them: ``annotator_id``,
    ``n_judgements`` and ``accuracy`` (the mean of the confusion's diagonal: the chance of a
    right answer averaged over the classes), most judgements first."""
    classes = classes_of(atype, config)
    if classes is None:
        return []
    k = len(classes)
    rows = Raw(conn).run(
        "SELECT annotator_id, counts, n_judgements FROM annotator_skills"
        " WHERE project_id = :project ORDER BY n_judgements DESC, annotator_id",
        {"project": project_id},
    )
    out = []
    for worker, counts, n in rows.fetchall():
        theta = online.confusion(_counts(counts, k))
        out.append(
            {
                "annotator_id": worker,
                "n_judgements": int(n),
                "accuracy": round(float(np.mean(np.diag(theta))), 4),
            }
        )
    return out


def expected_judgements(atype: AnnotationType, config: Any, quality: dict) -> float | None:
    """Judgements per task an adaptive project is expected to take before anything is learnt
    (:func:`online.expected_judgements` under the prior), or ``None`` for a fixed project."""
    if not is_adaptive(quality):
        return None
    classes = classes_of(atype, config)
    if classes is None:
        return None
    return online.expected_judgements(
        len(classes),
        quality["min_annotators"],
        quality["max_annotators"],
        quality["target_confidence"],
    )
