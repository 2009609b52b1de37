"""A task's votes, its vote summary and its consensus metadata: computed here only, through the
project's annotation type (``cynaps_data.types``).

The task row keeps a *vote summary* so that exports need not read every judgement row:
``tasks.vote_values`` / ``tasks.vote_workers`` hold the annotator votes' JSON texts and annotator
ids in judgement order, each followed by :data:`VOTE_SEPARATOR`; ``expert_value`` /
``expert_worker`` the expert's verdict. Submit appends to it (:func:`appended`), an import writes
it whole (:func:`summary_columns`), the exports split it again (:func:`from_summary`, or
:func:`from_judgements` when a worker id holds the separator).

The consensus metadata of one task (final value, source, agreement, the type's summary such as
``vote_distribution``) is :func:`task_consensus` for the JSON export and expert review, and
:func:`wide_columns` for the bulk wide export.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ...types import AnnotationType, Decision, VoteArrays
from ..tables import VOTE_SEPARATOR

#: the words of ``label_source`` (the final value's origin), in the export's category order
LABEL_SOURCES = ["consensus", "majority", "expert", "imported", "none"]


#: why a task stopped collecting annotator judgements (``tasks.stop_reason``; null while it
#: collects), in the export's category order: ``agreement`` (fixed mode: the top answer's share
#: reached ``consensus_threshold``), ``confident`` (adaptive mode: the posterior confidence
#: reached ``target_confidence``), ``max_annotators`` (reached without either: finalised with
#: the plurality / posterior label, or sent to an expert), ``disagreement`` (fixed mode with
#: expert review: disputed after ``min_annotators``), ``expert`` (an expert decided),
#: ``no_funds`` (another judgement could not be paid for: finalised with the plurality label),
#: ``imported`` (decided by imported judgements)
STOP_REASONS = [
    "agreement",
    "confident",
    "max_annotators",
    "disagreement",
    "expert",
    "no_funds",
    "imported",
]


def decide(
    atype: AnnotationType,
    votes: list[Any],
    quality: dict,
    needed: int,
    config: Any = None,
    posterior: tuple[Any, float] | None = None,
) -> Decision:
    """The consensus decision for a task whose annotator ``votes`` (values, in order) are these,
    under the project's label ``config``.

    Adaptive mode (``quality["mode"] == "adaptive"``) decides from ``posterior``, the task's
    ``(label, confidence)`` from the project's online skill model (``services.overlap``), not
    from the type's :meth:`~AnnotationType.decide`: confidence at or above
    ``target_confidence`` is final (``consensus``); below it the task wants one more judgement
    while it has fewer than ``max_annotators``, then waits for an expert
    (``enable_expert_review``) or takes the posterior label (``majority``). ``agreement`` is
    the share of votes equal to the label."""
    if len(votes) < needed:
        return Decision("pending", needed)
    if quality.get("mode") == "adaptive":
        if posterior is None:
            raise ValueError("adaptive mode decides from the task's posterior; none given")
        label, confidence = posterior
        text = orjson.dumps(label)
        share = sum(orjson.dumps(v) == text for v in votes) / len(votes)
        if confidence >= quality["target_confidence"]:
            return Decision("completed", needed, label, "consensus", share)
        if len(votes) < quality["max_annotators"]:
            return Decision("pending", len(votes) + 1, None, None, share)
        if quality["enable_expert_review"]:
            return Decision("disputed", needed, None, None, share)
        return Decision("completed", needed, label, "majority", share)
    return atype.decide(votes, quality, needed, config=config)


def stop_reason(decision: Decision, quality: dict, funded: bool = True) -> str | None:
    """Why a task with this ``decision`` stopped collecting judgements (:data:`STOP_REASONS`),
    ``None`` while pending. ``funded=False``: the decision was forced because another judgement
    could not be paid for (:func:`without_escalation`)."""
    if decision.status == "pending":
        return None
    if not funded:
        return "no_funds"
    adaptive = quality.get("mode") == "adaptive"
    if decision.status == "disputed":
        return "max_annotators" if adaptive else "disagreement"
    if decision.label_source == "consensus":
        return "confident" if adaptive else "agreement"
    if decision.label_source == "majority":
        return "max_annotators"
    return decision.label_source


def without_escalation(
    atype: AnnotationType, votes: list[Any], quality: dict, needed: int, config: Any = None
) -> Decision:
    """The decision when a disputed task may not get another annotator (the customer's balance
    cannot pay for one): as if ``max_annotators`` were reached, the type's plurality label
    (``majority``) is final."""
    return decide(atype, votes, {**quality, "max_annotators": needed}, needed, config)


def appended(value_json: str, worker: str) -> dict[str, str]:
    """What one more annotator vote appends to the task's vote summary columns."""
    return {"vote_value": value_json + VOTE_SEPARATOR, "vote_worker": worker + VOTE_SEPARATOR}


def summary_columns(votes: list[tuple]) -> dict:
    """The task's vote summary columns from its ``(worker, role, value_json, ...)`` judgements."""
    annotators = [v for v in votes if v[1] == "annotator"]
    experts = [v for v in votes if v[1] == "expert"]
    return {
        "vote_values": "".join(v[2] + VOTE_SEPARATOR for v in annotators),
        "vote_workers": "".join(v[0] + VOTE_SEPARATOR for v in annotators),
        "expert_value": experts[-1][2] if experts else None,
        "expert_worker": experts[-1][0] if experts else None,
    }


def imported_state(
    atype: AnnotationType, votes: list[tuple], quality: dict, config: Any = None
) -> dict:
    """The task columns (status, final value, source, agreement, needed, stop reason) of an
    imported task
    from its ``(worker, role, value_json, ...)`` judgements: an expert verdict is final,
    otherwise the consensus policy decides over the annotator votes."""
    values = [orjson.loads(v[2]) for v in votes if v[1] == "annotator"]
    experts = [v for v in votes if v[1] == "expert"]
    needed = quality["min_annotators"]
    quality = {**quality, "mode": "fixed"}  # no skill model for outside work: the fixed rule
    decision = decide(atype, values, quality, needed, config) if values else None
    agreement = decision.agreement if decision is not None else None
    if experts:
        return {
            "status": "completed",
            "final_label": experts[-1][2],
            "label_source": "expert",
            "agreement": agreement,
            "needed": max(needed, len(values)),
            "stop_reason": "expert",
        }
    if decision is None:
        return {
            "status": "pending",
            "final_label": None,
            "label_source": None,
            "agreement": None,
            "needed": needed,
            "stop_reason": None,
        }
    final = None if decision.final_label is None else orjson.dumps(decision.final_label).decode()
    return {
        "status": decision.status,
        "final_label": final,
        "label_source": decision.label_source,
        "agreement": agreement,
        "needed": max(decision.needed, len(values)),
        "stop_reason": None if decision.status == "pending" else "imported",
    }


def task_consensus(atype: AnnotationType, config: Any, task: Any, votes: list[dict]) -> dict:
    """One task's consensus metadata (JSON export, review): ``label``, ``label_source``,
    ``status``, ``agreement``, ``n_annotations``, ``stop_reason`` (:data:`STOP_REASONS`, null
    while collecting), the type's summary keys, ``annotator_ids``,
    ``expert_label``. ``task``: a tasks row; ``votes``: its judgements as
    ``{"annotator_id", "role", "label", ...}`` in the order they were made; ``config``: the
    project's (``None``: summarise only what was voted, see ``AnnotationType.summarize``)."""
    annotator = [v for v in votes if v["role"] == "annotator"]
    values = [v["label"] for v in annotator]
    return {
        "label": orjson.loads(task.final_label) if task.final_label else None,
        "label_source": task.label_source or "none",
        "status": task.status,
        "agreement": task.agreement,
        "n_annotations": len(values),
        "stop_reason": getattr(task, "stop_reason", None),
        **atype.summarize(values, config),
        "annotator_ids": [v["annotator_id"] for v in annotator],
        "expert_label": next((v["label"] for v in votes if v["role"] == "expert"), None),
    }


# -- bulk (the wide export) ----------------------------------------------------------------------
class Votes(NamedTuple):
    """Per annotator vote in task then judgement order: ``pos`` (task position, int64), ``values``
    (JSON texts), ``workers`` (annotator ids); per task: ``expert`` (JSON text, ``""`` for none)
    and ``expert_id`` (null for none)."""

    pos: np.ndarray
    values: pa.Array
    workers: pa.Array
    expert: pa.Array
    expert_id: pa.Array


def as_string_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values, pa.string())


def entries(column: Any) -> tuple[np.ndarray, pa.Array] | None:
    """Entries per row and the entries of a summary column (each entry ends with U+001E);
    ``None`` when a non-empty row does not end with the separator.

    Works on the column's UTF-8 bytes with numpy: the rows are contiguous and each ends with a
    separator, so the entries are the separator-delimited pieces of the whole value buffer."""
    arr = as_string_array(column)
    if arr.null_count:
        arr = arr.fill_null("")
    n = len(arr)
    wide = pa.types.is_large_string(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype="int64" if wide else "int32")
    offsets = offsets[arr.offset : arr.offset + n + 1].astype("int64")
    values = arr.buffers()[2]
    body = (
        np.frombuffer(values, dtype="uint8")[offsets[0] : offsets[-1]]
        if values is not None and n
        else np.zeros(0, dtype="uint8")
    )
    bounds = offsets - (offsets[0] if n else 0)
    is_sep = body == ord(VOTE_SEPARATOR)
    ends = bounds[1:][np.diff(bounds) > 0]  # one past each non-empty row
    if len(ends) and not is_sep[ends - 1].all():
        return None
    seps = np.flatnonzero(is_sep)
    lengths = np.diff(np.searchsorted(seps, bounds)).astype("int64")
    starts = np.concatenate([[0], seps[:-1] + 1]) if len(seps) else seps
    entry_offsets = np.concatenate([[0], np.cumsum(seps - starts)]).astype("int32")
    found = pa.StringArray.from_buffers(
        len(seps), pa.py_buffer(entry_offsets), pa.py_buffer(body[~is_sep])
    )
    return lengths, found


def from_summary(t: pa.Table) -> Votes | None:
    """The votes of the task rows ``t`` (columns ``vote_values``, ``vote_workers``,
    ``expert_value``, ``expert_worker``) from their vote summary; ``None`` when a worker id
    holds the separator (the summary cannot be split)."""
    values, workers = entries(t["vote_values"]), entries(t["vote_workers"])
    if values is None or workers is None or not np.array_equal(values[0], workers[0]):
        return None
    lengths, flat_values = values
    pos = np.repeat(np.arange(t.num_rows, dtype="int64"), lengths)
    expert_value = as_string_array(t["expert_value"])
    no_expert = pc.equal(expert_value, "")
    expert_id = pc.if_else(
        no_expert, pa.scalar(None, pa.string()), as_string_array(t["expert_worker"])
    )
    return Votes(pos, flat_values, workers[1], expert_value, expert_id)


def from_judgements(task_ids: np.ndarray, j: pa.Table) -> Votes:
    """The same as :func:`from_summary`, from the judgement rows ``j`` (columns ``task_id``,
    ``annotator_id``, ``role``, ``value``; ordered by id) of the tasks ``task_ids`` (sorted)."""
    task_ids = np.asarray(task_ids, dtype="int64")
    n = len(task_ids)
    pos = (
        np.searchsorted(task_ids, np.asarray(j["task_id"].to_numpy(), dtype="int64"))
        if n
        else np.zeros(0, "int64")
    )
    value = as_string_array(j["value"])
    worker = as_string_array(j["annotator_id"])
    is_expert = pc.equal(j["role"], "expert").to_numpy(zero_copy_only=False).astype(bool)
    annotator = ~is_expert
    order = np.argsort(pos[annotator], kind="stable")
    keep = pa.array(annotator)
    workers = worker.filter(keep).take(pa.array(order))
    values = value.filter(keep).take(pa.array(order))
    # the expert's verdict (last expert judgement of the task)
    expert_row = np.full(n, -1, dtype="int64")
    expert_rows = np.flatnonzero(is_expert)
    expert_row[pos[expert_rows]] = expert_rows
    missing = expert_row < 0
    if len(worker):
        rows = pa.array(np.where(missing, 0, expert_row), mask=missing)
        expert_id = worker.take(rows)
        expert = value.take(rows).fill_null("")
    else:
        expert_id = pa.nulls(n, pa.string())
        expert = pa.array([""] * n, pa.string())
    return Votes(pos[annotator][order], values, workers, expert, expert_id)


def null_if(arr: pa.ChunkedArray | pa.Array, value: Any) -> pa.Array:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return pc.if_else(pc.equal(arr, value), pa.scalar(None, arr.type), arr)


def strings_to_codes(values: Any, names: list[str]) -> np.ndarray:
    """int32 codes of ``values`` in ``names`` order; -1 for anything else."""
    if len(values) == 0:
        return np.zeros(0, dtype="int32")
    position = {n: i for i, n in enumerate(names)}
    encoded = as_string_array(values).dictionary_encode()
    lookup = np.array(
        [position.get(v, -1) for v in encoded.dictionary.to_pylist()] + [-1], dtype="int32"
    )
    indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return lookup[indices.astype("int64")]


def category(codes: np.ndarray, names: list) -> pa.DictionaryArray:
    """A dictionary array over ``names`` (in that order); code -1 is null."""
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype("int32"), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array([str(n) for n in names], pa.string()))


def timestamps(micros: pa.ChunkedArray) -> pa.Array:
    arr = micros.combine_chunks() if isinstance(micros, pa.ChunkedArray) else micros
    return arr.cast(pa.int64()).view(pa.timestamp("us", tz="UTC"))


STATUSES = ["pending", "disputed", "completed"]
#: the type's columns that sit at fixed places of the wide table (the others follow
#: ``n_annotations``)
PLACED = ("gold", "label", "agreement", "confidence", "expert_label")


def wide_columns(atype: AnnotationType, config: Any, t: pa.Table, votes: Votes) -> dict[str, Any]:
    """The wide columns (all but ``data``) of the task rows ``t`` and their ``votes``.

    Order: ``task``, ``external_id``, ``gold``, ``label``, ``label_source``, ``status``,
    ``stop_reason`` (:data:`STOP_REASONS`, null while collecting), ``agreement``, ``confidence``, ``n_annotations``, the type's other columns (e.g.
    ``vote_distribution``), ``annotator_ids``, ``expert_label``, ``expert_id``, ``updated_at``.
    """
    task_ids = np.asarray(t["id"].to_numpy(), dtype="int64")
    n = len(task_ids)
    n_votes = np.bincount(votes.pos, minlength=n).astype("int64")
    typed = atype.wide_columns(
        VoteArrays(
            n,
            votes.pos,
            votes.values,
            n_votes,
            as_string_array(t["final_label"]),
            as_string_array(t["gold"]),
            as_string_array(votes.expert),
            as_string_array(t["data"]) if "data" in t.column_names else None,
        ),
        config,
    )
    missing = [c for c in PLACED if c not in typed]
    if missing:
        raise TypeError(f"annotation type {atype.name!r} gave no {missing} wide column")
    offsets = np.concatenate([[0], np.cumsum(n_votes)]).astype("int32")
    source = null_if(t["label_source"], "").fill_null("none")
    return {
        "task": pa.array(task_ids, pa.int64()),
        "external_id": null_if(t["external_id"], ""),
        "gold": typed["gold"],
        "label": typed["label"],
        "label_source": category(strings_to_codes(source, LABEL_SOURCES), LABEL_SOURCES),
        "status": category(strings_to_codes(t["status"], STATUSES), STATUSES),
        "stop_reason": category(strings_to_codes(t["stop_reason"], STOP_REASONS), STOP_REASONS),
        "agreement": typed["agreement"],
        "confidence": typed["confidence"],
        "n_annotations": pa.array(n_votes, pa.int64()),
        **{k: v for k, v in typed.items() if k not in PLACED},
        "annotator_ids": pa.ListArray.from_arrays(pa.array(offsets), votes.workers),
        "expert_label": typed["expert_label"],
        "expert_id": votes.expert_id,
        "updated_at": timestamps(t["updated_us"]),
    }
