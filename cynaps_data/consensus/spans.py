"""Span consensus and span agreement (named entities, text regions): the maths of the ``spans``
annotation type (:mod:`cynaps_data.types.spans`).

A *span* is ``(start, end, label)``: character offsets ``start < end`` into a task's text (end
exclusive, Python slicing) and a label; an *answer* is a set of spans (a list, any order; dicts
``{"start", "end", "label"}`` are accepted everywhere a span is).

Pairwise span F1 (the metric Label Studio users ask for, LS#8950). For answers ``A``, ``B``
with ``m`` matched pairs of spans (each span matched at most once):

.. math:: F_1(A, B) = \\frac{2m}{|A| + |B|}, \\qquad F_1(\\emptyset, \\emptyset) = 1

``exact``: a match is the same ``(start, end, label)`` (``m = |A ∩ B|`` as multisets);
``overlap``: the same label and at least one shared character, pairs taken greedily by
character IoU (largest first; ties by position). A task's agreement is the mean of ``F_1``
over its answer pairs (1.0 for a single answer). Krippendorff's unitizing alpha:
:func:`unitizing_alpha`.

Consensus (:func:`span_consensus`), one task, ``n`` answers:

1. *matching*. Spans with the same boundaries (``start``, ``end``; also the same label when
   overlaps are allowed, where nested spans of other labels are other entities) form a group;
   groups are taken most-voted first (ties: leftmost) and each joins the existing cluster it
   overlaps most (character IoU with the cluster's anchor, the cluster's first group) that has
   none of its annotators yet, or starts a new cluster. So exact matches come first, then
   matches by overlap, and one annotator counts once per cluster.
2. *support* of a cluster = its annotators / ``n``. A cluster is in the final set when its
   support reaches ``threshold`` (the project's ``consensus_threshold``).
3. *boundaries by vote*: the anchor's (the most voted exact boundaries, leftmost on a tie);
   *label by vote*: the most common label of the cluster's spans (ties: the config's order,
   else first voted).
4. Unless overlaps are allowed, a kept span overlapping a better supported kept span is
   dropped (support, then position, decides).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

Span = tuple[int, int, str]

__all__ = [
    "SpanConsensus",
    "mean_pairwise_f1",
    "span_agreement",
    "span_consensus",
    "span_f1",
    "span_support",
    "span_supports",
    "spans_of",
    "unitizing_alpha",
]


def spans_of(answer: Iterable[Any] | None) -> list[Span]:
    """An answer as a list of ``(start, end, label)`` tuples (dicts or 3-sequences)."""
    out: list[Span] = []
    for span in answer or ():
        if isinstance(span, dict):
            out.append((int(span["start"]), int(span["end"]), str(span["label"])))
        else:
            start, end, label = span[0], span[1], span[2]
            out.append((int(start), int(end), str(label)))
    return out


def _iou(a: Span | tuple[int, int], b: Span | tuple[int, int]) -> float:
    """Character IoU of two spans (0 when they share no character)."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def _overlapping(a: Sequence[Span], b: Sequence[Span]) -> list[tuple[int, int]]:
    """The pairs ``(i, j)`` of spans of ``a`` and ``b`` sharing a character, found by a sort
    of ``b`` by start and a window as wide as its longest span (not every pair: a long
    document's answers hold thousands of spans)."""
    if not a or not b:
        return []
    order = sorted(range(len(b)), key=lambda j: b[j][0])
    starts = [b[j][0] for j in order]
    longest = max(e - s for s, e, _ in b)
    pairs = []
    for i, (start, end, _) in enumerate(a):
        k = bisect.bisect_right(starts, start - longest)
        stop = bisect.bisect_left(starts, end)
        pairs.extend((i, order[m]) for m in range(k, stop) if b[order[m]][1] > start)
    return pairs


def _matches(a: Sequence[Span], b: Sequence[Span], mode: str) -> int:
    if mode == "exact":
        return sum((Counter(a) & Counter(b)).values())
    if mode != "overlap":
        raise ValueError(f"mode must be 'exact' or 'overlap', got {mode!r}")
    pairs = sorted(
        (-_iou(a[i], b[j]), a[i][0], b[j][0], i, j)
        for i, j in _overlapping(a, b)
        if a[i][2] == b[j][2]
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    for _, _, _, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
    return len(used_a)


def span_f1(a: Iterable[Any], b: Iterable[Any], mode: str = "exact") -> float:
    """``F_1`` of two answers (``exact`` or ``overlap`` matching; two empty answers: 1.0)."""
    a, b = spans_of(a), spans_of(b)
    if not a and not b:
        return 1.0
    return 2.0 * _matches(a, b, mode) / (len(a) + len(b))


def mean_pairwise_f1(answers: Sequence[Iterable[Any]], mode: str = "exact") -> float:
    """The mean ``F_1`` over the answer pairs of one task (1.0 for one answer, NaN for none)."""
    sets = [spans_of(a) for a in answers]
    n = len(sets)
    if n == 0:
        return float("nan")
    if n == 1:
        return 1.0
    total = sum(span_f1(sets[i], sets[j], mode) for i in range(n) for j in range(i + 1, n))
    return total / (n * (n - 1) / 2)


class SpanConsensus(NamedTuple):
    """One task's consensus: ``spans`` the final ``(start, end, label)`` sorted by position,
    ``support`` their support (share of the answers, aligned), ``clusters`` every matched
    cluster as ``(start, end, label, support)`` (kept or not, by position), and the agreements
    (mean pairwise exact / overlap F1)."""

    spans: list[Span]
    support: list[float]
    clusters: list[tuple[int, int, str, float]]
    agreement: float
    agreement_overlap: float


def _clusters(answers: list[list[Span]], by_label: bool) -> list[dict]:
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for voter, spans in enumerate(answers):
        for start, end, label in spans:
            key = (start, end, label) if by_label else (start, end)
            groups.setdefault(key, []).append((voter, label))
    ordered = sorted(groups, key=lambda k: (-len({v for v, _ in groups[k]}), k[0], k[1]))
    longest = max((k[1] - k[0] for k in groups), default=0)
    clusters: list[dict] = []
    by_start: list[tuple[int, int]] = []  # (anchor start, cluster index), sorted
    for key in ordered:
        members = groups[key]
        voters = {v for v, _ in members}
        best, best_iou = None, 0.0
        # the clusters whose anchor may overlap the key, in creation order (ties: the first)
        lo = bisect.bisect_right(by_start, (key[0] - longest, len(clusters)))
        hi = bisect.bisect_left(by_start, (key[1], -1))
        for index in sorted(c for _, c in by_start[lo:hi]):
            cluster = clusters[index]
            if (by_label and cluster["key"][2] != key[2]) or cluster["voters"] & voters:
                continue
            iou = _iou(cluster["key"], key)
            if iou > best_iou:
                best, best_iou = cluster, iou
        if best is None:
            bisect.insort(by_start, (key[0], len(clusters)))
            clusters.append(
                {"key": key, "voters": set(voters), "labels": [lb for _, lb in members]}
            )
        else:
            best["voters"] |= voters
            best["labels"].extend(lb for _, lb in members)
    return clusters


def span_consensus(
    answers: Sequence[Iterable[Any]],
    threshold: float = 0.5,
    *,
    labels: Sequence[str] | None = None,
    allow_overlap: bool = False,
) -> SpanConsensus:
    """The consensus of one task's ``answers`` (see the module docstring for the rule).

    ``threshold``: the support a span needs (share of the answers, in (0, 1]); ``labels``: the
    config's labels (their order breaks label ties); ``allow_overlap``: keep overlapping final
    spans (and match per label)."""
    sets = [spans_of(a) for a in answers]
    n = len(sets)
    if n == 0:
        return SpanConsensus([], [], [], float("nan"), float("nan"))
    rank = {label: i for i, label in enumerate(labels or ())}
    found: list[tuple[int, int, str, float]] = []
    for cluster in _clusters(sets, by_label=allow_overlap):
        counts = Counter(cluster["labels"])
        first = {lb: i for i, lb in reversed(list(enumerate(cluster["labels"])))}
        label = min(counts, key=lambda lb: (-counts[lb], rank.get(lb, len(rank)), first[lb]))
        start, end = cluster["key"][0], cluster["key"][1]
        found.append((start, end, label, len(cluster["voters"]) / n))
    found.sort(key=lambda c: (c[0], c[1], c[2]))
    chosen = [c for c in found if c[3] >= threshold - 1e-12]
    if not allow_overlap:
        kept: list[tuple[int, int, str, float]] = []  # disjoint, sorted by start
        for c in sorted(chosen, key=lambda c: (-c[3], c[0], c[1])):
            at = bisect.bisect_left(kept, c)
            before = kept[at - 1] if at else None
            after = kept[at] if at < len(kept) else None
            if (before is None or before[1] <= c[0]) and (after is None or c[1] <= after[0]):
                kept.insert(at, c)
        chosen = kept
    return SpanConsensus(
        [(s, e, lb) for s, e, lb, _ in chosen],
        [sup for *_, sup in chosen],
        found,
        mean_pairwise_f1(sets, "exact"),
        mean_pairwise_f1(sets, "overlap"),
    )


def span_support(span: Any, answers: Sequence[Iterable[Any]]) -> float:
    """The share of ``answers`` holding a span of ``span``'s label that overlaps it (NaN for
    no answers): the ``support`` of a final span in the export."""
    (start, end, label), *_ = spans_of([span])
    if not answers:
        return float("nan")
    hits = sum(
        any(lb == label and s < end and start < e for s, e, lb in spans_of(a)) for a in answers
    )
    return hits / len(answers)


def span_supports(spans: Iterable[Any], answers: Sequence[Iterable[Any]]) -> list[float]:
    """:func:`span_support` of each of ``spans`` (aligned), in one sweep per answer."""
    spans = spans_of(spans)
    if not answers:
        return [float("nan")] * len(spans)
    hits = [0] * len(spans)
    for answer in answers:
        theirs = spans_of(answer)
        held = {i for i, j in _overlapping(spans, theirs) if spans[i][2] == theirs[j][2]}
        for i in held:
            hits[i] += 1
    return [h / len(answers) for h in hits]


def span_agreement(frame: pd.DataFrame, column: str = "spans") -> pd.DataFrame:
    """Per task agreement of crowd spans. ``frame``: columns ``task``, ``worker`` and
    ``column`` (each an answer: a list of spans). Returns a DataFrame indexed by ``task`` with
    ``n`` (int64, answers), ``f1_exact`` and ``f1_overlap`` (float64, mean pairwise span F1;
    1.0 for one answer)."""
    import pandas as pd

    rows = []
    for task, group in frame.groupby("task", sort=True):
        answers = list(group[column])
        rows.append(
            (
                task,
                len(answers),
                mean_pairwise_f1(answers, "exact"),
                mean_pairwise_f1(answers, "overlap"),
            )
        )
    out = pd.DataFrame(rows, columns=["task", "n", "f1_exact", "f1_overlap"]).set_index("task")
    return out.astype({"n": "int64", "f1_exact": "float64", "f1_overlap": "float64"})


#: the client-side methods (``aggregate_spans``): the platform's rule and the sequence models
#: of :mod:`.spans_seq` (run over each task's elementary segments)
SEQUENCE_MODELS = {
    "bsc": "BayesianSequenceCombination",
    "token_mv": "TokenMajorityVote",
    "token_ds": "TokenDawidSkene",
}
METHODS = ("span_vote", *SEQUENCE_MODELS)


def aggregate_spans(
    frame: pd.DataFrame,
    method: str = "span_vote",
    *,
    labels: Sequence[str],
    allow_overlap: bool = False,
    texts: Any = None,
    **params: Any,
) -> pd.DataFrame:
    """Aggregate crowd spans across tasks. ``frame``: columns ``task``, ``worker``, ``spans``
    (each an answer). Returns a DataFrame indexed by ``task`` (sorted) with ``spans`` (object:
    lists of ``{start, end, label, confidence}``), ``agreement`` (mean pairwise exact span F1)
    and ``confidence`` (mean exact F1 of the answers with the result), float64.

    ``span_vote``: :func:`span_consensus` per task (``threshold``, default 0.5; a span's
    confidence is its support). ``bsc``, ``token_mv``, ``token_ds``: the sequence models of
    :mod:`.spans_seq` (their parameters), fitted over all tasks at once; each task's answers
    are tagged IOB2 over its *elementary segments* (the pieces between every answer's span
    boundaries, :func:`~.spans_tokens.segment_offsets`, so no text is needed) and the model's
    entities mapped back to characters (confidence: the model's). Nested spans (overlaps
    allowed) are not representable in IOB2: the sequence models keep the first by start.
    ``texts`` (optional; a mapping or Series task -> the task's text): the sequence models then
    tag the text's words (cut at the answers' span boundaries) and read them, so ``bsc`` adds
    its word model and text tagger. An unknown method or parameter is a ``ValidationError``
    naming it."""
    import pandas as pd

    from ..errors import ValidationError
    from .spans_tokens import segment_offsets, spans_to_tags

    if method not in METHODS:
        raise ValidationError(
            f"unknown spans method {method!r}; choose one of {list(METHODS)}", param="method"
        )
    model = None
    if method == "span_vote":
        unknown = sorted(set(params) - {"threshold"})
        if unknown:
            raise ValidationError(
                f"unknown parameter {unknown[0]!r} for span_vote; it takes threshold",
                param="method",
            )
        threshold = float(params.get("threshold", 0.5))
        if not 0.0 < threshold <= 1.0:
            raise ValidationError("threshold must be in (0, 1]", param="threshold")
    else:
        from . import spans_seq

        cls = getattr(spans_seq, SEQUENCE_MODELS[method])
        try:
            model = cls(labels=list(labels), **params)
        except TypeError as exc:
            raise ValidationError(f"bad parameters for {method}: {exc}", param="method") from None
    results: dict[Any, list] = {}
    answers_of: dict[Any, list[list[Span]]] = {}
    segments: dict[Any, list[tuple[int, int]]] = {}
    tag_rows: list[tuple] = []
    for task, group in frame.groupby("task", sort=True) if len(frame) else ():
        answers = [spans_of(a) for a in group["spans"]]
        answers_of[task] = answers
        if model is None:
            result = span_consensus(answers, threshold, labels=labels, allow_overlap=allow_overlap)
            results[task] = [
                {"start": s, "end": e, "label": lb, "confidence": sup}
                for (s, e, lb), sup in zip(result.spans, result.support, strict=True)
            ]
            continue
        text = texts.get(task) if texts is not None else None
        text = text if isinstance(text, str) else None
        segments[task] = segs = segment_offsets(answers, text)
        words = [None if text is None else text[a:b] for a, b in segs]
        results[task] = []
        for worker, answer in zip(group["worker"], answers, strict=True):
            for position, tag in enumerate(spans_to_tags(answer, segs)):
                tag_rows.append((task, str(worker), position, tag, words[position]))
    if model is not None and tag_rows:
        columns = ["task", "worker", "position", "tag", "token"]
        tags = pd.DataFrame(tag_rows, columns=columns)
        model.fit(tags if texts is not None else tags.drop(columns="token"))
        ents = model.entities_
        for task, start, end, label, conf in zip(
            ents["task"], ents["start"], ents["end"], ents["label"], ents["confidence"], strict=True
        ):
            segs = segments[task]
            results[task].append(
                {
                    "start": segs[int(start)][0],
                    "end": segs[int(end) - 1][1],
                    "label": str(label),
                    "confidence": float(conf),
                }
            )
    index = pd.Index(list(results), name="task")
    agreement = [mean_pairwise_f1(answers_of[t]) for t in results]
    confidence = [
        sum(span_f1(results[t], a) for a in answers_of[t]) / len(answers_of[t]) for t in results
    ]
    return pd.DataFrame(
        {
            "spans": pd.Series(list(results.values()), index=index, dtype=object),
            "agreement": pd.Series(agreement, index=index, dtype="float64"),
            "confidence": pd.Series(confidence, index=index, dtype="float64"),
        }
    )


def _sections(spans: list[Span], label: str, length: int, where: str) -> list[tuple[int, int, int]]:
    """One coder's continuum ``[0, length)`` cut into ``(begin, length, is_unit)`` sections for
    ``label``: its spans of that label and the gaps between them (empty gaps left out)."""
    units = sorted((s, e) for s, e, lb in spans if lb == label)
    out: list[tuple[int, int, int]] = []
    at = 0
    for start, end in units:
        if start < at:
            raise ValueError(f"{where}: two {label!r} spans overlap at {start}")
        if end > length:
            raise ValueError(f"{where}: a {label!r} span ends at {end}, past the length {length}")
        if start > at:
            out.append((at, start - at, 0))
        out.append((start, end - start, 1))
        at = end
    if length > at:
        out.append((at, length - at, 0))
    return out


def _delta(u: tuple[int, int, int], v: tuple[int, int, int]) -> float:
    """Krippendorff's squared distance of two sections (begin, length, is_unit)."""
    (bu, lu, wu), (bv, lv, wv) = u, v
    d = bu - bv
    if wu and wv and -lu < d < lv:  # two overlapping units: squared boundary differences
        return float(d * d + (bu + lu - bv - lv) ** 2)
    if wu and not wv and 0 <= d <= lv - lu:  # a unit inside the other coder's gap
        return float(lu * lu)
    if wv and not wu and lv - lu <= d <= 0:  # a gap holding the other coder's unit
        return float(lv * lv)
    return 0.0


def unitizing_disagreements(
    answers: Sequence[Iterable[Any]], length: int, label: str
) -> tuple[float, float]:
    """``(D_o, D_e)`` of Krippendorff's unitizing alpha for one label (see
    :func:`unitizing_alpha`)."""
    m = len(answers)
    big_l = float(length)
    sections = [
        _sections(spans_of(a), label, length, f"answers[{i}]") for i, a in enumerate(answers)
    ]
    observed = sum(
        _delta(u, v)
        for i in range(m)
        for j in range(m)
        if i != j
        for u in sections[i]
        for v in sections[j]
    )
    d_o = observed / (m * (m - 1) * big_l**2)
    every = [s for coder in sections for s in coder]
    n_c = sum(w for _, _, w in every)
    gaps = [lg for _, lg, w in every if not w]
    total = 0.0
    for _, lu, w in every:
        if w:
            total += (n_c - 1) / 3 * (2 * lu**3 - 3 * lu**2 + lu)
            total += lu**2 * sum(lg - lu + 1 for lg in gaps if lg >= lu)
    denominator = m * big_l * (m * big_l - 1) - sum(lu * (lu - 1) for _, lu, w in every if w)
    d_e = (2.0 / big_l) * total / denominator
    return d_o, d_e


def unitizing_alpha(
    answers: Sequence[Iterable[Any]],
    length: int,
    labels: Sequence[str] | None = None,
    *,
    by_label: bool = False,
) -> float | dict[str, float]:
    """Krippendorff's unitizing alpha (Krippendorff 2004, "Measuring the reliability of
    qualitative text analysis data", Quality & Quantity 38) of ``m = len(answers)`` coders who
    each unitized the whole continuum ``[0, length)`` (e.g. one text, or several texts laid end
    to end with their offsets shifted). Per label ``c`` each coder's continuum is cut into its
    ``c`` units and the gaps between them, sections ``(b, l, w)`` (begin, length, ``w = 1`` for
    a unit); with ``L = length`` and ``N_c`` the number of ``c`` units of all coders:

    .. math::

        D_o^c = \\frac{\\sum_i \\sum_g \\sum_{j \\ne i} \\sum_h \\delta^2_{ig,jh}}{m(m-1)L^2},
        \\qquad
        D_e^c = \\frac{2}{L}\\,
        \\frac{\\sum_{ig} w_{ig}\\left[\\frac{N_c-1}{3}(2l_{ig}^3-3l_{ig}^2+l_{ig})
        + l_{ig}^2 \\sum_{jh} (1-w_{jh})(l_{jh}-l_{ig}+1)[l_{jh} \\ge l_{ig}]\\right]}
        {mL(mL-1) - \\sum_{ig} w_{ig}\\, l_{ig}(l_{ig}-1)}

    where ``δ²`` is ``(b_u-b_v)² + (b_u+l_u-b_v-l_v)²`` for two overlapping units, ``l_u²``
    for a unit inside the other coder's gap (and symmetrically), 0 otherwise.
    ``α_c = 1 - D_o^c / D_e^c``; the joint alpha (returned unless ``by_label``) is
    ``1 - Σ_c D_o^c / Σ_c D_e^c`` over ``labels`` (default: the labels used). NaN where no
    unit exists. Spans of one label of one coder may not overlap (``ValueError``)."""
    if len(answers) < 2:
        raise ValueError("unitizing alpha needs at least two coders")
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if labels is None:
        labels = sorted({lb for a in answers for _, _, lb in spans_of(a)})
    parts = {label: unitizing_disagreements(answers, length, label) for label in labels}
    if by_label:
        return {
            lb: (1 - d_o / d_e if d_e > 0 else float("nan")) for lb, (d_o, d_e) in parts.items()
        }
    d_o = sum(p[0] for p in parts.values())
    d_e = sum(p[1] for p in parts.values())
    return 1 - d_o / d_e if d_e > 0 else float("nan")
