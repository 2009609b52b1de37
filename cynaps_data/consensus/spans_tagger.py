r"""Text evidence for :class:`~cynaps_data.consensus.spans_seq.BayesianSequenceCombination`: a
token tagger learned from the crowd's own consensus (no gold, no pretrained model, no download).

**Features** of a token (one-hot; a feature is kept when at least :data:`MIN_COUNT` tokens have
it): the word lower-cased and as written, its shape (``Xxxx``, ``d.d``: upper ``X``, lower
``x``, digit ``d``, runs collapsed), its 3-letter prefix and suffix, the previous and next words
(lower-cased) and their shapes, whether it starts the sentence, and its *case profile*
(:func:`case_profile`): how often the word is written with a capital elsewhere in the corpus,
where the capital means something. The profile tells a sentence-initial "The" from "Paris",
and "JAPAN" in an all-capitals headline from "WIN".

**Model**: multinomial logistic regression fitted to *soft* labels, the tag marginals
:math:`\gamma_{ic}` of the current consensus, by L-BFGS on

.. math:: L(W, b) = -\sum_i \sum_c \gamma_{ic} \log \mathrm{softmax}(x_i W + b)_c
          + \frac{1}{2C} \lVert W \rVert^2 .

**Cross-fitted**: the sentences are split at random into :data:`N_FOLDS` folds and each fold's
tokens are tagged by a model fitted on the other folds, so a token's own consensus never vouches
for it. The tagger's tags (arg-max per token) then join the crowd as one more annotator who
tagged every sentence (:func:`with_tagger`): the sequence model learns its confusion like any
worker's, so a word the crowd tags as ``ORG`` in most sentences pulls towards ``ORG`` where a
sentence's few workers missed it, and only as far as the tagger proves reliable.

On the CoNLL-2003 MTurk crowd (benchmarks/README.md) three rounds of tagging and refitting add
about 1.4 strict-F1 points on the test half and 1.8 on the val half, on which these settings
were chosen.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize

if TYPE_CHECKING:
    from .spans_seq_data import SequenceData

#: a feature value must occur on at least this many tokens to get a weight
MIN_COUNT = 2
#: about this many values of one feature kind at most (the most frequent, ties kept), so that
#: the model's size (values x tags) stays bounded however large the corpus
MAX_VALUES = 50_000
#: folds of the cross-fitting
N_FOLDS = 2
#: inverse L2 strength of the logistic regression
C = 1.0
#: L-BFGS steps of the first fit of a fold, and of each warm-started refit
FIRST_STEPS, WARM_STEPS = 100, 40
#: L-BFGS memory (pairs of past steps): each step costs O(MEMORY x parameters) besides the loss
MEMORY = 5
#: the tagger's name among the workers (made unique if a worker already has it)
TAGGER_NAME = "(text tagger)"


def word_shape(word: str) -> str:
    """``"McDonald's"`` -> ``"XxXx'x"``: upper ``X``, lower ``x``, digit ``d``, other characters
    as they are, runs of one class collapsed."""
    out: list[str] = []
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


#: upper bounds of the :func:`case_profile` bins of the share of capitalised occurrences
CASE_BINS = (0.1, 0.5, 0.9)


def case_profile(words: list[str], first: np.ndarray) -> list[str]:
    """Per token, how its lower-cased form is written across ``words`` (the corpus in reading
    order; ``first`` bool: the token starts its sentence): the share of its occurrences that
    start with a capital, counted only where case carries information (not the first token of
    a sentence, in a sentence with at least one lower-case letter, tokens with a letter),
    binned at :data:`CASE_BINS`: ``"<0.1"``, ``"<0.5"``, ``"<0.9"``, ``">=0.9"``, or
    ``"unseen"`` when the word never occurs in such a place."""
    n = len(words)
    if n == 0:
        return []
    first = np.asarray(first, dtype=bool)
    sentence = np.cumsum(first) - 1 if first[0] else np.cumsum(first)
    has_lower = np.fromiter((any(c.islower() for c in w) for w in words), bool, n)
    cased = np.bincount(sentence, weights=has_lower)[sentence] > 0
    letter = np.fromiter((any(c.isalpha() for c in w) for w in words), bool, n)
    capital = np.fromiter((w[:1].isupper() for w in words), bool, n)
    informative = cased & ~first & letter
    codes, _ = pd.factorize(pd.Series([w.lower() for w in words], dtype=object))
    seen = np.bincount(codes[informative], minlength=codes.max() + 1)
    caps = np.bincount(codes[informative], weights=capital[informative], minlength=seen.size)
    share = (caps / np.maximum(seen, 1))[codes]
    names = np.array([f"<{b:g}" for b in CASE_BINS] + [f">={CASE_BINS[-1]:g}"], dtype=object)
    out = names[np.searchsorted(np.asarray(CASE_BINS), share, side="right")]
    out[seen[codes] == 0] = "unseen"
    return out.tolist()


def token_features(
    words: list[str], first: np.ndarray, last: np.ndarray, min_count: int = MIN_COUNT
) -> sp.csr_matrix:
    """``(n_tokens, n_features)`` one-hot CSR matrix of ``words`` (the tokens in reading
    order; ``first``/``last`` bool: the token starts / ends its sentence); per feature kind the
    values on at least ``min_count`` tokens, at most :data:`MAX_VALUES` of them."""
    n = len(words)
    low = [w.lower() for w in words]
    shape = [word_shape(w) for w in words]
    before = np.r_[-1, np.arange(n - 1)]
    after = np.r_[np.arange(1, n), -1]
    before[first] = -1
    after[last] = -1

    def neighbour(values: list[str], idx: np.ndarray, edge: str) -> list[str]:
        return [edge if j < 0 else values[j] for j in idx.tolist()]

    columns = [
        low,
        words,
        shape,
        [w[:3] for w in low],
        [w[-3:] for w in low],
        neighbour(low, before, "<s>"),
        neighbour(low, after, "</s>"),
        neighbour(shape, before, "<s>"),
        neighbour(shape, after, "</s>"),
        np.asarray(first).astype(np.int8).tolist(),
        case_profile(words, first),
    ]
    rows, cols, width = [], [], 0
    for values in columns:
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=False)
        counts = np.bincount(codes, minlength=len(uniques))
        kept = counts >= min_count
        if kept.sum() > MAX_VALUES:
            kept &= counts >= np.sort(counts)[-MAX_VALUES]
        new = np.cumsum(kept) - 1
        use = kept[codes]
        rows.append(np.flatnonzero(use))
        cols.append(new[codes[use]] + width)
        width += int(kept.sum())
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(r.size), (r, c)), shape=(n, width))


def fit_soft_softmax(
    x: sp.csr_matrix, targets: np.ndarray, c: float = C, steps: int = FIRST_STEPS, start: Any = None
) -> np.ndarray:
    """Parameters (``W`` flattened, then ``b``) minimising :math:`L(W, b)` above for soft
    ``targets`` ``(n, K)`` (rows sum to 1), at most ``steps`` L-BFGS steps from ``start``."""
    d, k = x.shape[1], targets.shape[1]
    xt = x.T.tocsr()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        value = -float((targets * (z - np.log(s))).sum()) + 0.5 * float((w * w).sum()) / c
        g = e / s - targets
        return value, np.concatenate([(xt @ g + w / c).ravel(), g.sum(axis=0)])

    x0 = np.zeros(d * k + k) if start is None else start
    res = minimize(
        loss, x0, jac=True, method="L-BFGS-B", options={"maxiter": int(steps), "maxcor": MEMORY}
    )
    return res.x


def softmax_probas(theta: np.ndarray, x: sp.csr_matrix, k: int) -> np.ndarray:
    d = x.shape[1]
    z = x @ theta[: d * k].reshape(d, k) + theta[d * k :]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TextTagger:
    """The cross-fitted tagger of one :class:`~.spans_seq_data.SequenceData` (which must carry the
    tokens' text). :meth:`tags` maps the current marginals (layout row order) to the tagger's
    tag code per layout row; the folds' parameters are kept between calls (warm starts)."""

    def __init__(self, data: SequenceData, random_state: int = 0) -> None:
        lay = data.layout
        position, _, sentence = lay.coords()
        # reading order: sentence by sentence, position by position
        self.reading = np.lexsort((position, sentence))
        names = [str(w) for w in data.word_names.tolist()]
        codes = data.word[self.reading]
        words = ["" if c < 0 else names[c] for c in codes.tolist()]
        pos_r = position[self.reading]
        last = np.r_[pos_r[1:] == 0, True]
        self.x = token_features(words, pos_r == 0, last)
        rng = np.random.default_rng(random_state)
        self.fold = rng.integers(0, N_FOLDS, lay.lengths.size)[sentence[self.reading]]
        self.k = data.k
        self._theta: dict[int, np.ndarray] = {}

    def tags(self, gamma: np.ndarray) -> np.ndarray:
        """Cross-fitted arg-max tag codes ``(N,)`` in layout row order for marginals ``gamma``
        ``(N, K)`` in layout row order."""
        target = gamma[self.reading]
        probas = np.zeros_like(target)
        for f in range(N_FOLDS):
            train, test = self.fold != f, self.fold == f
            if not test.any():
                continue
            if not train.any():  # a single sentence: nothing to learn from
                probas[test] = target[test]
                continue
            start = self._theta.get(f)
            steps = FIRST_STEPS if start is None else WARM_STEPS
            theta = fit_soft_softmax(self.x[train], target[train], steps=steps, start=start)
            self._theta[f] = theta
            probas[test] = softmax_probas(theta, self.x[test], self.k)
        out = np.empty(gamma.shape[0], dtype=np.int64)
        out[self.reading] = probas.argmax(axis=1)
        return out


def tagger_name(workers: pd.Index) -> str:
    """:data:`TAGGER_NAME`, suffixed until no worker has it."""
    name, i = TAGGER_NAME, 1
    while name in workers:
        i += 1
        name = f"{TAGGER_NAME} {i}"
    return name


def with_tagger(data: SequenceData, codes: np.ndarray, name: str) -> SequenceData:
    """``data`` plus one worker ``name`` who tagged every token with ``codes`` (layout row
    order)."""
    lay = data.layout
    n = lay.n_tokens
    position, rank, sentence = lay.coords()
    rows = np.arange(n)
    prev = np.zeros(n, dtype=np.int64)
    inner = position > 0
    # the same sentence's previous token: same rank, the block before
    prev[inner] = codes[lay.offsets[position[inner] - 1] + rank[inner]]
    return dataclasses.replace(
        data,
        worker_names=data.worker_names.append(pd.Index([name], dtype=object)),
        sentence=np.concatenate([data.sentence, sentence]),
        worker=np.concatenate([data.worker, np.full(n, data.n_workers, dtype=np.int64)]),
        position=np.concatenate([data.position, position]),
        tag=np.concatenate([data.tag, codes]),
        prev=np.concatenate([data.prev, prev]),
        row=np.concatenate([data.row, rows]),
    )
