r"""Free-text answers (transcriptions, short answers): normalisation, word edit distance,
per-task consensus, agreement and aggregation across tasks (medoid, ROVER, weighted ROVER).

Data contract: the aggregators take a long DataFrame with columns ``task``, ``worker``,
``text`` (one row per answer; ids any hashable, not null; ``text`` a string, NaN/None = the empty
answer). Results are Series indexed by ``task`` (name ``"text"``), in order of first appearance.

**Normalisation and distance** (:class:`TextNormalizer`, :func:`word_edit_distance`,
:func:`edit_similarity`): in :mod:`cynaps_data.consensus.text_similarity`, re-exported here.

**Per-task consensus** (:func:`text_consensus`, the platform's helper): with normalised answers
:math:`a_1..a_n`, the exact share is :math:`\max_v |\{i: a_i = v\}| / n`; if it reaches
``min_share`` that answer wins (``method="exact"``), else the medoid
:math:`\arg\max_i \sum_{j \ne i} s(a_i, a_j)` (``"medoid"``). Agreement is the mean pairwise
similarity :math:`\bar s = \binom{n}{2}^{-1} \sum_{i<j} s(a_i, a_j)`; a task is disputed when
:math:`\bar s <` ``min_agreement``.

**Worker reliability** (unsupervised, iterated). Start from :math:`v_w = 1`; an answer's support
is the weighted mean similarity to the other answers of its task,
:math:`u_i = \sum_{j \ne i} v_{w_j} s_{ij} / \sum_{j \ne i} v_{w_j}`; a worker's skill is the
shrunk mean :math:`q_w = (\sum_{i \in w} u_i + \kappa \bar u) / (n_w + \kappa)` and the vote
weight is :math:`v_w = q_w^{\gamma}`; repeat ``n_iter`` times.

**ROVER** (Fiscus 1997). The answers of a task are aligned one by one into a word transition
network (a list of slots, each a weighted bag of words with :math:`\varepsilon` = no word):
substitution 1 unless the word is already in the slot, insertion 1 (a new slot whose
:math:`\varepsilon` carries the weight of the answers already aligned), deletion 1 unless the
slot already holds :math:`\varepsilon`; each slot then outputs its heaviest entry. crowd-kit
uses the input order, so its output depends on it; here the answers are aligned in order of
decreasing weighted centrality :math:`c_i = \sum_{j \ne i} v_{w_j} s_{ij}` (ties by text),
which makes the skeleton the medoid and the result independent of row order. Slot ties go to a
word over :math:`\varepsilon`, then the longer word, then the greater string (crowd-kit's rule).
Leading deletions of slots holding :math:`\varepsilon` are free here (crowd-kit charges them),
so given the same order the two can pick different equal-cost alignments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._base import BaseAggregator, aggregator_params
from ._encode import check_long_frame
from .text_similarity import (  # noqa: F401  (public here too)
    DEFAULT_NORMALIZER,
    TextNormalizer,
    _missing,
    _sim_matrix,
    edit_similarity,
    pairwise_similarity,
    word_edit_distance,
)

__all__ = [
    "TextConsensus",
    "TextMedoid",
    "TextNormalizer",
    "TextROVER",
    "edit_similarity",
    "pairwise_similarity",
    "rover_words",
    "text_agreement",
    "text_alpha",
    "text_consensus",
    "word_edit_distance",
    "word_error_rate",
]


class TextConsensus(NamedTuple):
    """One task's consensus: ``text`` (the chosen answer as given, or "" with no answer),
    ``index`` (its position in the input, -1 with no answer), ``method`` ("exact", "medoid" or
    "none"), ``exact_share`` (share of the most common normalised answer), ``agreement``
    (mean pairwise similarity; 1.0 for fewer than 2 answers), ``disputed`` (bool)."""

    text: str
    index: int
    method: str
    exact_share: float
    agreement: float
    disputed: bool


def text_consensus(
    answers: Sequence[Any],
    *,
    min_share: float = 0.5,
    min_agreement: float = 0.6,
    normalizer: TextNormalizer = DEFAULT_NORMALIZER,
) -> TextConsensus:
    """The platform's per-task decision over one task's answers (strings, NaN/None = empty).

    The most common normalised answer wins if its share is ``>= min_share`` (ties: the first
    given); otherwise the medoid (largest summed similarity to the others; ties: the first
    given). ``disputed`` when the mean pairwise similarity is below ``min_agreement`` (0.6 flags
    12% of CrowdSpeech dev-clean recordings and 35% of dev-other; 0.7 would flag 27% / 57%)."""
    n = len(answers)
    if n == 0:
        return TextConsensus("", -1, "none", 0.0, 1.0, False)
    words = normalizer.many(answers)
    counts: dict[tuple[str, ...], int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    best_n = max(counts.values())
    share = best_n / n
    s = _sim_matrix(words)
    agreement = 1.0 if n < 2 else float((s.sum() - n) / (n * (n - 1)))
    if share >= min_share:
        idx = next(i for i, w in enumerate(words) if counts[w] == best_n)
        method = "exact"
    else:
        idx = int(np.argmax(s.sum(axis=1)))
        method = "medoid"
    raw = answers[idx]
    text = raw if isinstance(raw, str) else ""
    return TextConsensus(text, idx, method, share, agreement, bool(agreement < min_agreement))


# ---- across tasks: the long frame ------------------------------------------------------------


@dataclass
class _Prepared:
    """Answers grouped by task: ``order`` row positions sorted by task code (stable),
    ``starts`` group boundaries into ``order`` (len n_tasks + 1), ``words`` normalised answers in
    row order, ``worker`` int codes in row order; pairs ``(pi, pj, ps)``: every ordered pair of
    distinct answers of one task (row positions) and its similarity."""

    task_names: pd.Index
    worker_names: pd.Index
    raw: list[Any]
    words: list[tuple[str, ...]]
    worker: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    pi: np.ndarray
    pj: np.ndarray
    ps: np.ndarray


def _check_normalizer(normalizer: Any) -> None:
    if not isinstance(normalizer, TextNormalizer):
        raise ValidationError(
            f"normalizer must be a TextNormalizer, got {type(normalizer).__name__} {normalizer!r}",
            param="normalizer",
        )


def _prepare(data: Any, normalizer: TextNormalizer) -> _Prepared:
    _check_normalizer(normalizer)
    check_long_frame(data, ("task", "worker", "text"), not_null=("task", "worker"))
    raw = data["text"].tolist()
    bad = next((i for i, t in enumerate(raw) if not (isinstance(t, str) or _missing(t))), None)
    if bad is not None:
        raise ValidationError(
            f"column 'text' must hold strings (NaN/None = empty answer); index "
            f"{data.index[bad]!r} holds {type(raw[bad]).__name__}",
            param="text",
        )
    tcodes, task_names = pd.factorize(data["task"], sort=False)
    wcodes, worker_names = pd.factorize(data["worker"], sort=False)
    words = normalizer.many(raw)
    order = np.argsort(tcodes, kind="stable")
    starts = np.searchsorted(tcodes[order], np.arange(len(task_names) + 1))
    pi: list[int] = []
    pj: list[int] = []
    ps: list[float] = []
    for g in range(len(task_names)):
        rows = order[starts[g] : starts[g + 1]].tolist()
        s = _sim_matrix([words[r] for r in rows])
        for a, ra in enumerate(rows):
            for b, rb in enumerate(rows):
                if a != b:
                    pi.append(ra)
                    pj.append(rb)
                    ps.append(s[a, b])
    return _Prepared(
        pd.Index(task_names, name="task"),
        pd.Index(worker_names, name="worker"),
        raw,
        words,
        wcodes.astype(np.int64),
        order,
        starts,
        np.asarray(pi, dtype=np.int64),
        np.asarray(pj, dtype=np.int64),
        np.asarray(ps, dtype=np.float64),
    )


def _reliability(
    p: _Prepared, n_iter: int, gamma: float, kappa: float
) -> tuple[np.ndarray, np.ndarray]:
    """Worker skills ``q`` and vote weights ``v = q**gamma`` (see module docstring)."""
    n_rows, n_w = len(p.words), len(p.worker_names)
    v = np.ones(n_w)
    q = np.full(n_w, np.nan)
    for _ in range(max(int(n_iter), 1)):
        vj = v[p.worker[p.pj]]
        num = np.bincount(p.pi, weights=vj * p.ps, minlength=n_rows)
        den = np.bincount(p.pi, weights=vj, minlength=n_rows)
        has = den > 0
        u = np.where(has, num / np.where(has, den, 1.0), np.nan)
        ok = ~np.isnan(u)
        mean_u = float(u[ok].mean()) if ok.any() else 1.0
        tot = np.bincount(p.worker[ok], weights=u[ok], minlength=n_w)
        cnt = np.bincount(p.worker[ok], minlength=n_w)
        q = (tot + kappa * mean_u) / (cnt + kappa) if kappa > 0 else tot / np.maximum(cnt, 1)
        q = np.where(cnt > 0, q, mean_u)
        v = np.clip(q, 1e-6, None) ** gamma
    return q, v


def _centrality(p: _Prepared, v: np.ndarray) -> np.ndarray:
    """Per answer: summed similarity to the others of its task, weighted by their vote weight."""
    return np.bincount(p.pi, weights=v[p.worker[p.pj]] * p.ps, minlength=len(p.words))


def _ranked(p: _Prepared, g: int, c: np.ndarray, v_rows: np.ndarray) -> list[int]:
    """Row positions of task ``g`` by decreasing centrality, ties by text then weight: a
    content-only order (independent of the row order)."""
    rows = p.order[p.starts[g] : p.starts[g + 1]].tolist()
    return sorted(rows, key=lambda r: (-round(c[r], 9), p.words[r], -v_rows[r], str(p.raw[r])))


def _align_merge(
    slots: list[dict[str, float]], hyp: Sequence[str], wt: float, total: float
) -> list[dict[str, float]]:
    """Align ``hyp`` (weight ``wt``) into the network ``slots`` (previous weight ``total``).

    DP rows are kept whole and the path is read back from them with the forward tie order
    (match/substitution, then deletion, then insertion), so the inner loop stores no pointers."""
    n, m = len(hyp), len(slots)
    delc = [0 if "" in s else 1 for s in slots]
    row = [0] * (m + 1)
    for j in range(m):
        row[j + 1] = row[j] + delc[j]
    rows = [row]
    for word in hyp:
        prev = row
        left = prev[0] + 1
        row = [left]
        for dg, up, slot, dc in zip(prev, prev[1:], slots, delc, strict=False):  # prev: m + 1
            d = dg if word in slot else dg + 1
            x = left + dc
            if x < d:
                d = x
            x = up + 1
            if x < d:
                d = x
            row.append(d)
            left = d
        rows.append(row)
    out: list[dict[str, float]] = []
    i, j = n, m
    while i or j:
        d = rows[i][j]
        if i and j and rows[i - 1][j - 1] + (hyp[i - 1] not in slots[j - 1]) == d:
            slot = slots[j - 1]
            slot[hyp[i - 1]] = slot.get(hyp[i - 1], 0.0) + wt
            i, j = i - 1, j - 1
        elif j and rows[i][j - 1] + delc[j - 1] == d:
            slot = slots[j - 1]
            slot[""] = slot.get("", 0.0) + wt
            j -= 1
        else:
            slot = {"": total, hyp[i - 1]: wt}
            i -= 1
        out.append(slot)
    out.reverse()
    return out


def rover_words(
    hyps: Sequence[Sequence[str]], weights: Sequence[float] | None = None
) -> tuple[str, ...]:
    """ROVER over word lists aligned in the given order (the first is the skeleton), each with
    its vote weight (default 1); returns the voted words (see module docstring)."""
    if not hyps:
        return ()
    wts = [1.0] * len(hyps) if weights is None else [float(w) for w in weights]
    slots: list[dict[str, float]] = [{w: wts[0]} for w in hyps[0]]
    total = wts[0]
    for h, wt in zip(hyps[1:], wts[1:], strict=True):
        slots = _align_merge(slots, h, wt, total)
        total += wt
    out = []
    for slot in slots:
        word = max(slot.items(), key=lambda kv: (kv[1], len(kv[0]), kv[0]))[0]
        if word:
            out.append(word)
    return tuple(out)


class _TextAggregator(BaseAggregator):
    """Shared fit plumbing. Fitted: ``texts_`` (Series indexed by task, name "text"),
    ``agreement_`` (Series indexed by task: mean pairwise similarity, NaN with one answer),
    ``skills_`` (Series indexed by worker: the reliability estimate ``q_w``), ``weights_``
    (Series indexed by worker: vote weights used)."""

    normalizer: TextNormalizer
    n_iter: int
    gamma: float
    kappa: float

    def _weighted(self) -> bool:
        raise NotImplementedError

    def _predict(self, p: _Prepared, v: np.ndarray) -> list[str]:
        raise NotImplementedError

    def fit(self, data: pd.DataFrame, gold: Any = None) -> _TextAggregator:
        """Fit on a long DataFrame with columns ``task``, ``worker``, ``text``. ``gold`` is
        accepted for API symmetry and ignored (these methods use no gold)."""
        for name, lo in (("n_iter", 1), ("gamma", 0), ("kappa", 0)):
            val = getattr(self, name)
            if not (isinstance(val, (int, float, np.number)) and val >= lo):
                raise ValidationError(f"{name} must be a number >= {lo}, got {val!r}", param=name)
        p = _prepare(data, self.normalizer)
        q, v = _reliability(p, self.n_iter, self.gamma, self.kappa)
        if not self._weighted():
            v = np.ones_like(v)
        texts = self._predict(p, v)
        n_rows = len(p.words)
        sums = np.bincount(p.pi, weights=p.ps, minlength=n_rows)
        cnt = np.bincount(p.pi, minlength=n_rows)
        tcode = np.empty(n_rows, dtype=np.int64)
        tcode[p.order] = np.repeat(np.arange(len(p.task_names)), np.diff(p.starts))
        tot = np.bincount(tcode, weights=sums, minlength=len(p.task_names))
        pairs = np.bincount(tcode, weights=cnt, minlength=len(p.task_names))
        with np.errstate(invalid="ignore", divide="ignore"):
            agree = np.where(pairs > 0, tot / np.where(pairs > 0, pairs, 1), np.nan)
        self.texts_ = pd.Series(texts, index=p.task_names, name="text", dtype=object)
        self.agreement_ = pd.Series(agree, index=p.task_names, name="agreement")
        self.skills_ = pd.Series(q, index=p.worker_names, name="skill")
        self.weights_ = pd.Series(v, index=p.worker_names, name="weight")
        return self

    def fit_predict(self, data: pd.DataFrame, gold: Any = None) -> pd.Series:
        """Fit and return the consensus text per task (Series indexed by task, name "text")."""
        return self.fit(data, gold).texts_

    def fit_predict_proba(self, data: pd.DataFrame, gold: Any = None) -> pd.DataFrame:
        raise NotImplementedError("free-text aggregators have no class probabilities")


@aggregator_params
class TextMedoid(_TextAggregator):
    """Per task, the answer with the largest summed similarity to the others (as given: case
    and punctuation kept; NaN -> ""), optionally with reliability-weighted similarities.
    Ties: the smaller normalised text, then the smaller raw text. Parameters as
    :class:`TextROVER`."""

    weighted: bool = False
    n_iter: int = 3
    gamma: float = 1.0
    kappa: float = 1.0
    normalizer: TextNormalizer = DEFAULT_NORMALIZER

    def _weighted(self) -> bool:
        return bool(self.weighted)

    def _predict(self, p: _Prepared, v: np.ndarray) -> list[str]:
        c = _centrality(p, v)
        v_rows = v[p.worker]
        out = []
        for g in range(len(p.task_names)):
            r = _ranked(p, g, c, v_rows)[0]
            out.append(p.raw[r] if isinstance(p.raw[r], str) else "")
        return out


@aggregator_params
class TextROVER(_TextAggregator):
    """ROVER with a content-ordered skeleton and (by default) reliability-weighted votes.

    Parameters
    ----------
    weighted : bool
        Vote with the workers' reliability weights ``v_w = q_w**gamma`` (True) or 1 each.
    n_iter : int
        Reliability iterations (module docstring). ``gamma``: weight exponent.
        ``kappa``: shrinkage of a worker's skill towards the mean, in answers.
    normalizer : TextNormalizer
        How answers become words; the output is the voted words joined by single spaces.
    """

    weighted: bool = True
    n_iter: int = 3
    gamma: float = 6.0
    kappa: float = 1.0
    normalizer: TextNormalizer = DEFAULT_NORMALIZER

    def _weighted(self) -> bool:
        return bool(self.weighted)

    def _predict(self, p: _Prepared, v: np.ndarray) -> list[str]:
        c = _centrality(p, v)
        v_rows = v[p.worker]
        out = []
        for g in range(len(p.task_names)):
            rows = _ranked(p, g, c, v_rows)
            out.append(" ".join(rover_words([p.words[r] for r in rows], v_rows[rows].tolist())))
        return out


def text_agreement(
    data: pd.DataFrame, normalizer: TextNormalizer = DEFAULT_NORMALIZER
) -> pd.Series:
    """Per task (index ``task``, name "agreement"): mean pairwise :func:`edit_similarity` of
    its answers; NaN for a task with one answer. ``data``: columns task, worker, text."""
    return TextMedoid(normalizer=normalizer, n_iter=1).fit(data).agreement_


def text_alpha(
    data: pd.DataFrame,
    *,
    n_pairs: int = 20000,
    random_state: Any = 0,
    normalizer: TextNormalizer = DEFAULT_NORMALIZER,
) -> float:
    r"""Krippendorff's alpha for free text with the distance :math:`\delta = 1 - s` (word edit
    similarity): :math:`\alpha = 1 - D_o / D_e`. Over tasks with 2+ answers (:math:`n` answers in
    all), :math:`D_o = n^{-1} \sum_t (m_t - 1)^{-1} \sum_{i \ne j \in t} \delta_{ij}` and
    :math:`D_e` is the mean :math:`\delta` over pairs of distinct answers pooled across tasks:
    exact when there are at most ``n_pairs`` such pairs, else estimated from ``n_pairs`` pairs
    drawn uniformly (seeded by ``random_state``). 1 = perfect agreement, 0 = chance level."""
    p = _prepare(data, normalizer)
    sizes = np.diff(p.starts)
    m_row = np.empty(len(p.words), dtype=np.float64)
    m_row[p.order] = np.repeat(sizes, sizes)
    pool = np.flatnonzero(m_row >= 2)
    n = pool.size
    if n < 2:
        raise ValidationError("alpha needs a task with at least 2 answers", param="data")
    d_o = float(((1.0 - p.ps) / (m_row[p.pi] - 1.0)).sum() / n)
    if n * (n - 1) // 2 <= n_pairs:
        a, b = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(random_state)
        a = rng.integers(0, n, n_pairs)
        b = (a + rng.integers(1, n, n_pairs)) % n
    words = [p.words[r] for r in pool]
    sims = [
        1.0 - word_edit_distance(words[i], words[j]) / max(len(words[i]), len(words[j]), 1)
        for i, j in zip(a.tolist(), b.tolist(), strict=True)
    ]
    d_e = 1.0 - float(np.mean(sims))
    return 1.0 if d_e == 0 else 1.0 - d_o / d_e


def word_error_rate(
    hyp: pd.Series, ref: pd.Series, normalizer: TextNormalizer = DEFAULT_NORMALIZER
) -> tuple[float, float]:
    """``(corpus WER, mean per-item WER)`` of texts ``hyp`` against ``ref`` (Series indexed by
    task; only tasks in ``ref`` count, a task missing from ``hyp`` is the empty text). Corpus:
    total word edits / total reference words; per item: edits / reference words (an empty
    reference scores 0 if the hypothesis is empty too, else 1)."""
    for name, series in (("hyp", hyp), ("ref", ref)):
        if not isinstance(series, pd.Series):
            raise ValidationError(
                f"{name} must be a pandas Series of texts indexed by task, got "
                f"{type(series).__name__}",
                param=name,
            )
        if series.index.has_duplicates:
            dup = series.index[series.index.duplicated()].tolist()[0]
            raise ValidationError(
                f"{name} has more than one text for task {dup!r}; give one text per task",
                param=name,
            )
    _check_normalizer(normalizer)
    hyp = hyp.reindex(ref.index)
    hw, rw = normalizer.many(hyp.tolist()), normalizer.many(ref.tolist())
    edits = np.array(
        [word_edit_distance(r, h) for h, r in zip(hw, rw, strict=True)], dtype=np.float64
    )
    n = np.array([len(r) for r in rw], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(n > 0, edits / np.where(n > 0, n, 1), (edits > 0).astype(np.float64))
    return float(edits.sum() / max(n.sum(), 1.0)), float(per.mean())
