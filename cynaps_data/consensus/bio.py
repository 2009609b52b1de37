r"""IOB2 (BIO) tag utilities: entities from tags and back, repair, strict entity-level F1.

Pure Python/numpy, no seqeval dependency; the chunking rules are conlleval's (and seqeval's
default, non-strict mode), so figures agree with both.

Tag shapes: ``"O"``, ``"B-<label>"``, ``"I-<label>"`` (``<label>`` non-empty, e.g. ``PER``).
Anything else (``"X-PER"``, ``"B-"``, ``"PER"``, ``""``) raises ``ValueError`` naming the
position. A whole sequence may also be given as one whitespace-separated string
(``"B-PER I-PER O"``).

Chunking (conlleval): an entity starts at ``B-X``, at ``I-X`` after ``O`` (IOB1 style / an
invalid IOB2 continuation), and at ``I-X`` after a tag of another label; it continues while the
following tags are ``I-X`` of the same label. So ``I-PER I-PER`` is one PER entity and
``B-PER I-LOC`` two entities (PER, then LOC).

Strict F1 (conlleval): an entity counts as correct only when its start, end and label all match
a gold entity of the same sequence,

.. math:: P = \frac{|G \cap \hat E|}{|\hat E|}, \quad R = \frac{|G \cap \hat E|}{|G|}, \quad
          F_1 = \frac{2PR}{P + R},

summed (micro) over all sequences; :math:`P` (:math:`R`) is 0 when there are no predicted
(gold) entities, and :math:`F_1` is 0 when :math:`P + R = 0`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "entities",
    "is_valid",
    "parse_tag",
    "repair",
    "strict_f1",
    "strict_f1_by_label",
    "to_tags",
    "chunk_starts",
]

Entity = tuple[int, int, str]


def parse_tag(tag: str, where: str = "tag") -> tuple[str, str]:
    """Split one tag into ``(prefix, label)``: ``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", "")``.

    >>> parse_tag("I-MISC")
    ('I', 'MISC')
    >>> parse_tag("O")
    ('O', '')

    Raises ``ValueError`` naming ``where`` for any other shape (``"X-PER"``, ``"B-"``, ``"PER"``).
    Labels may contain ``-`` (``"B-GPE-CITY" -> ("B", "GPE-CITY")``).
    """
    if not isinstance(tag, str):
        raise ValueError(f"{where}: expected a tag string, got {type(tag).__name__} {tag!r}")
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI" and tag[2:].strip() == tag[2:]:
        return tag[0], tag[2:]
    raise ValueError(
        f"{where}: unknown tag {tag!r}; expected 'O', 'B-<label>' or 'I-<label>' (IOB2)"
    )


def _as_list(tags: Sequence[str] | str) -> list[str]:
    if isinstance(tags, str):
        return tags.split()
    return list(tags)


def entities(tags: Sequence[str] | str) -> list[Entity]:
    """Entities ``(start, end, label)`` of one tag sequence; token indices, ``end`` exclusive.

    >>> entities(["B-PER", "I-PER", "O", "B-LOC"])
    [(0, 2, 'PER'), (3, 4, 'LOC')]
    >>> entities("O I-ORG I-ORG B-ORG")       # IOB1: I- after O starts an entity
    [(1, 3, 'ORG'), (3, 4, 'ORG')]
    >>> entities(["B-PER", "I-LOC", "I-LOC"])  # a label change starts a new entity
    [(0, 1, 'PER'), (1, 3, 'LOC')]
    >>> entities([])
    []
    """
    seq = _as_list(tags)
    out: list[Entity] = []
    start = -1
    cur = ""
    for i, tag in enumerate(seq):
        prefix, label = parse_tag(tag, f"tags[{i}]")
        if prefix == "I" and start >= 0 and label == cur:
            continue  # continuation
        if start >= 0:
            out.append((start, i, cur))
            start, cur = -1, ""
        if prefix != "O":
            start, cur = i, label
    if start >= 0:
        out.append((start, len(seq), cur))
    return out


def to_tags(ents: Iterable[Sequence], n_tokens: int) -> list[str]:
    """IOB2 tags of ``n_tokens`` tokens holding the entities ``(start, end, label)``.

    >>> to_tags([(0, 2, "PER"), (3, 4, "LOC")], 5)
    ['B-PER', 'I-PER', 'O', 'B-LOC', 'O']
    >>> to_tags([], 2)
    ['O', 'O']

    Raises ``ValueError`` naming the entity for an empty or out-of-range span
    (``0 <= start < end <= n_tokens``), an empty label, or two overlapping entities.
    """
    if int(n_tokens) != n_tokens or n_tokens < 0:
        raise ValueError(f"n_tokens must be a non-negative integer, got {n_tokens!r}")
    n = int(n_tokens)
    tags = ["O"] * n
    taken = np.zeros(n, dtype=bool)
    for j, ent in enumerate(ents):
        try:
            start, end, label = ent
        except (TypeError, ValueError):
            raise ValueError(f"entities[{j}]: expected (start, end, label), got {ent!r}") from None
        if not (isinstance(label, str) and label and label.strip() == label):
            raise ValueError(f"entities[{j}].label: expected a non-empty string, got {label!r}")
        if int(start) != start or int(end) != end or not 0 <= start < end <= n:
            raise ValueError(
                f"entities[{j}]: span [{start}, {end}) is empty or outside 0..{n} tokens"
            )
        start, end = int(start), int(end)
        if taken[start:end].any():
            raise ValueError(f"entities[{j}]: span [{start}, {end}) overlaps another entity")
        taken[start:end] = True
        tags[start] = "B-" + label
        for i in range(start + 1, end):
            tags[i] = "I-" + label
    return tags


def repair(tags: Sequence[str] | str) -> list[str]:
    """A valid IOB2 sequence with the same entities as conlleval reads from ``tags``.

    Only ``I-X`` tags that start an entity (after ``O``, at position 0, or after another label)
    change, to ``B-X``; everything else is kept.

    >>> repair(["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-MISC"])
    ['B-PER', 'I-PER', 'O', 'B-LOC', 'B-ORG', 'B-MISC']
    """
    seq = _as_list(tags)
    return to_tags(entities(seq), len(seq))


def is_valid(tags: Sequence[str] | str) -> bool:
    """Whether ``tags`` is valid IOB2 (every ``I-X`` follows ``B-X`` or ``I-X``).

    >>> is_valid(["B-PER", "I-PER", "O"]), is_valid(["O", "I-PER"])
    (True, False)
    """
    seq = _as_list(tags)
    return repair(seq) == seq


def chunk_starts(prefix: np.ndarray, label: np.ndarray, new_seq: np.ndarray) -> np.ndarray:
    """Vectorised conlleval chunking over many concatenated sequences.

    ``prefix``: int array per token, 0 = ``O``, 1 = ``B``, 2 = ``I``; ``label``: int code of the
    entity label (any value where ``prefix == 0``); ``new_seq``: bool, True at each sequence's
    first token. Returns a bool array, True where an entity starts. An entity then runs over the
    following tokens with ``prefix == 2`` and the same ``label`` up to the next start, ``O`` or
    sequence start.

    >>> chunk_starts(np.array([2, 2, 0, 1, 2]), np.array([0, 0, 0, 1, 2]),
    ...              np.array([True, False, False, False, False])).tolist()
    [True, False, False, True, True]
    """
    prefix = np.asarray(prefix)
    label = np.asarray(label)
    new_seq = np.asarray(new_seq, dtype=bool)
    prev_prefix = np.empty_like(prefix)
    prev_label = np.empty_like(label)
    if prefix.size:
        prev_prefix[0], prev_label[0] = 0, 0
        prev_prefix[1:], prev_label[1:] = prefix[:-1], label[:-1]
    continues = (prefix == 2) & (prev_prefix != 0) & (prev_label == label) & ~new_seq
    return (prefix != 0) & ~continues


def _entity_sets(
    gold: Mapping[Hashable, Sequence[str] | str], pred: Mapping[Hashable, Sequence[str] | str]
) -> Iterable[tuple[set[Entity], set[Entity]]]:
    for task, g in gold.items():
        gseq = _as_list(g)
        p = pred.get(task)
        pseq = ["O"] * len(gseq) if p is None else _as_list(p)
        if len(pseq) != len(gseq):
            raise ValueError(f"task {task!r}: predicted {len(pseq)} tags for {len(gseq)} gold tags")
        try:
            ge = set(entities(gseq))
        except ValueError as exc:
            raise ValueError(f"gold[{task!r}]: {exc}") from None
        try:
            pe = set(entities(pseq))
        except ValueError as exc:
            raise ValueError(f"pred[{task!r}]: {exc}") from None
        yield ge, pe


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "tp": tp,
        "n_pred": n_pred,
        "n_gold": n_gold,
    }


def strict_f1(
    gold: Mapping[Hashable, Sequence[str] | str], pred: Mapping[Hashable, Sequence[str] | str]
) -> dict[str, float]:
    """Entity-level exact-match (conlleval) precision, recall and F1, micro over sequences.

    ``gold`` and ``pred`` map a task id to its tag sequence (list of tags, or one
    space-separated string). Every task of ``gold`` is scored; a task missing from ``pred``
    counts as all ``O`` (its gold entities are missed); tasks only in ``pred`` are ignored, so
    ``pred`` may cover more tasks than one split's ``gold``. Returns a dict with ``precision``,
    ``recall``, ``f1`` (floats in [0, 1]) and the counts ``tp``, ``n_pred``, ``n_gold``.

    >>> g = {"s1": ["B-PER", "I-PER", "O", "B-LOC"], "s2": ["O", "B-ORG"]}
    >>> p = {"s1": ["B-PER", "O", "O", "B-LOC"], "s2": ["O", "B-ORG"]}
    >>> r = strict_f1(g, p)       # gold 3, predicted 3, correct 2 (LOC, ORG; PER is too short)
    >>> round(r["precision"], 4), round(r["recall"], 4), round(r["f1"], 4)
    (0.6667, 0.6667, 0.6667)

    Raises ``ValueError`` naming the task for a length mismatch or an unknown tag.
    """
    tp = n_pred = n_gold = 0
    for ge, pe in _entity_sets(gold, pred):
        tp += len(ge & pe)
        n_pred += len(pe)
        n_gold += len(ge)
    return _prf(tp, n_pred, n_gold)


def strict_f1_by_label(
    gold: Mapping[Hashable, Sequence[str] | str], pred: Mapping[Hashable, Sequence[str] | str]
) -> dict[str, dict[str, float]]:
    """:func:`strict_f1` per entity label: ``{label: {precision, recall, f1, tp, ...}}``.

    >>> r = strict_f1_by_label({"a": ["B-PER", "B-LOC"]}, {"a": ["B-PER", "O"]})
    >>> r["PER"]["f1"], r["LOC"]["recall"]
    (1.0, 0.0)
    """
    counts: dict[str, list[int]] = {}
    for ge, pe in _entity_sets(gold, pred):
        for e in ge:
            counts.setdefault(e[2], [0, 0, 0])[2] += 1
        for e in pe:
            c = counts.setdefault(e[2], [0, 0, 0])
            c[1] += 1
            c[0] += e in ge
    return {lab: _prf(*c) for lab, c in sorted(counts.items())}
