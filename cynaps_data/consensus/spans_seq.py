r"""Crowd sequence labelling (NER-style BIO tags): aggregate several workers' IOB2 tag sequences
per task into one valid IOB2 sequence and its entities.

Input: a long DataFrame, one row per (task, worker, token):

* ``task`` (any hashable), ``worker`` (str or any hashable), ``position`` (integer token index
  within the task, ``0 .. n-1``), ``tag`` (str, ``"O"``, ``"B-<label>"`` or ``"I-<label>"``).

Optional ``token`` (str): the token's text (the same for every worker; nulls = unknown), read
only by :class:`BayesianSequenceCombination`'s word model. A worker who answered a task gives a
tag for every one of its ``n`` tokens (``n`` = the largest position any worker gave + 1).
Workers' own sequences need not be valid IOB2 (``I-X`` after ``O`` is a common crowd answer;
the models learn it).

Fitted attributes of every aggregator here:

* ``tags_``: DataFrame ``task``, ``position`` (int64), ``tag`` (str, valid IOB2 per task),
  ``confidence`` (float64, the posterior probability of the chosen tag at that token), sorted
  by task (first-appearance order) then position;
* ``entities_``: DataFrame ``task``, ``start``, ``end`` (int64 token indices, ``end``
  exclusive), ``label`` (str), ``confidence`` (float64, mean of ``tags_.confidence`` over the
  entity's tokens);
* ``tag_names_`` (list of str: ``O`` then ``B-``/``I-`` per label), ``labels_`` (entity
  labels).

Models
------
:class:`TokenMajorityVote`: each token's most frequent tag (ties to ``O`` when ``O`` is tied,
else to the entity tag listed first, or all ties to the entity tag with ``ties="entity"``),
then :func:`.bio.repair`.

:class:`TokenDawidSkene`: :class:`~cynaps_data.consensus.DawidSkene` with every (task,
position) as an independent item, then :func:`.bio.repair`.

:class:`BayesianSequenceCombination` (the default; BSC-seq, Simpson & Gurevych, EMNLP 2019;
HMM-Crowd, Nguyen et al., ACL 2017). True tags of a task follow a first-order Markov chain and
each worker reports a noisy copy, with a confusion that depends on the true tag and on the tag
the worker gave to the previous token:

.. math::
    z_0 \sim T_{\mathrm{O}\,\cdot}, \qquad z_i \mid z_{i-1} \sim T_{z_{i-1}\,\cdot}, \qquad
    y^w_i \mid z_i, y^w_{i-1} \sim E^w_{z_i,\, y^w_{i-1},\,\cdot}
    \quad (y^w_{-1} = \mathrm{O}),

with conjugate priors :math:`T_{a\cdot} \sim \mathrm{Dir}(\beta_{a\cdot})` (``beta`` on the
transitions IOB2 allows, structural zeros on ``O -> I-X`` and ``B-X/I-X -> I-Y``, so every
decoded sequence is valid) and :math:`E^w_{b p \cdot} \sim \mathrm{Dir}(\alpha_{b p \cdot})`,
:math:`\alpha_{bpc} = \alpha_{\mathrm{off}} + (\alpha_{\mathrm{diag}} - \alpha_{\mathrm{off}})
[c = b]`. (``annotator="full"`` drops the dependence on :math:`y^w_{i-1}`: one ``K x K``
confusion per worker, HMM-Crowd's annotator model without its sentence features.)

When the frame has a ``token`` column and ``word_prior`` is set (the default), the token's
text :math:`x_i` is one more, always-present "annotator" (BSC's independent text model, a naive
Bayes word model): :math:`x_i \mid z_i \sim \rho_{z_i\cdot}`,
:math:`\rho_{b\cdot} \sim \mathrm{Dir}(\omega \mathbf 1_V)` over the vocabulary, so a word
the crowd tags as an entity in one sentence pulls towards that tag elsewhere. With the text,
``tagger_rounds`` (default 3) rounds then add a *text tagger* as one more annotator who tags every
token: a logistic regression on word, shape, affix and neighbour features, fitted to the
current consensus on half of the sentences and tagging the other half (cross-fitted,
:mod:`.spans_tagger`), each round followed by a refit; its confusion is learned like any
worker's, its skill reported as ``tagger_skill_`` (never among ``skills_``). ``alpha_invalid``
(optional, ``annotator="seq"`` only) replaces the pseudo-counts of the worker's own
IOB2-invalid steps (previous reported tag :math:`p`, reported :math:`c`, e.g. ``O -> I-X``).

Mean-field variational Bayes, :math:`q(z)\,q(T)\,q(\rho)\prod_w q(E^w)`, iterates

* :math:`q(z)`: forward-backward (:mod:`.spans_seq_hmm`) with
  :math:`\tilde T = \exp \mathbb E[\log T]` and emissions
  :math:`\log\phi_{i}(b) = \sum_{w} \mathbb E[\log E^w_{b,\,y^w_{i-1},\,y^w_i}]`
  (one sparse product: tokens x (worker, previous tag, tag) incidence times the
  ``(W K K) x K`` table of expected log confusions), plus
  :math:`\mathbb E[\log \rho_{b, x_i}]` with the word model;
* :math:`q(E^w_{bp\cdot}) = \mathrm{Dir}(\alpha_{bp\cdot} + N^w_{bp\cdot})`,
  :math:`N^w_{bpc} = \sum_i \gamma_i(b)[y^w_{i-1}=p][y^w_i=c]` (the transposed product);
* :math:`q(T_{a\cdot}) = \mathrm{Dir}(\beta_{a\cdot} + \Xi_{a\cdot})` with the summed pairwise
  marginals :math:`\Xi`; :math:`q(\rho_{b\cdot}) = \mathrm{Dir}(\omega + \sum_{i: x_i = v}
  \gamma_i(b))_v`,

where :math:`\mathbb E[\log \theta_j] = \psi(a_j) - \psi(\sum_{j'} a_{j'})` for
:math:`\theta \sim \mathrm{Dir}(a)`. It starts from soft token majority-vote marginals and stops
when no token marginal moves by more than ``tol`` (or after ``n_iter`` rounds). The output is
the Viterbi path under :math:`\tilde T, \phi` (``decode="viterbi"``) or the per-token argmax of
:math:`\gamma` then :func:`.bio.repair` (``decode="marginal"``); ``confidence`` is
:math:`\gamma_i` of the chosen tag. Nothing loops over tokens in Python: sums over answers are
sparse products, and the recursions loop over positions with all sentences of that length
batched.

Worker reliability after fit: ``confusions_`` (DataFrame indexed by ``worker``, true ``tag``;
columns = reported tag; the posterior-mean :math:`P(y \mid z)`, previous tag marginalised with
the worker's own counts), ``skills_`` (Series by worker: expected share of the worker's tags
that equal the true tag), ``transitions_`` (DataFrame previous x next tag, posterior mean
:math:`T`), ``n_iter_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import digamma

from ..errors import ValidationError
from .bio import chunk_starts
from .spans_seq_data import SequenceData, encode_sequences
from .spans_seq_hmm import Layout, forward_backward, viterbi

__all__ = [
    "BayesianSequenceCombination",
    "TokenDawidSkene",
    "TokenMajorityVote",
    "SequenceData",
    "encode_sequences",
]


def _valid_transitions(k: int) -> np.ndarray:
    """``allowed[a, b]``: IOB2 allows tag b after tag a (``I-X`` only after ``B-X``/``I-X``)."""
    allowed = np.ones((k, k), dtype=bool)
    for b in range(2, k, 2):  # I-X codes
        allowed[:, b] = False
        allowed[b - 1, b] = allowed[b, b] = True
    return allowed


def _repair_codes(codes: np.ndarray, layout: Layout) -> np.ndarray:
    """Vectorised :func:`.bio.repair` on tag codes in layout row order."""
    prefix = np.where(codes == 0, 0, np.where(codes % 2 == 1, 1, 2))
    label = (codes - 1) // 2
    # chunking needs sentence order: walk the layout as (sentence rank, position)
    n = codes.size
    pos, rank, _ = layout.coords()
    order = np.lexsort((pos, rank))
    starts = np.empty(n, dtype=bool)
    starts[order] = chunk_starts(prefix[order], label[order], pos[order] == 0)
    out = codes.copy()
    fix = starts & (prefix == 2)
    out[fix] -= 1  # I-X -> B-X
    return out


class _SequenceAggregator:
    """Shared ``fit`` / result frames; subclasses implement ``_decide(data) -> (codes, probas,
    raw)`` with ``codes`` int64 ``(N,)`` valid IOB2, ``probas`` ``(N, K)`` and ``raw`` the
    per-token decision before :func:`.bio.repair` (whose posterior is the ``confidence``), all in
    layout order."""

    labels: Sequence[str] | None = None

    def fit(self, tags: pd.DataFrame) -> _SequenceAggregator:
        """Fit on the long tag frame (columns ``task``, ``worker``, ``position``, ``tag``)."""
        data = encode_sequences(tags, self.labels)
        codes, probas, raw = self._decide(data)
        self._set_results(data, codes, probas, raw)
        return self

    def fit_predict(self, tags: pd.DataFrame) -> pd.DataFrame:
        """Fit and return ``tags_``."""
        return self.fit(tags).tags_

    def _decide(self, data: SequenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _set_results(
        self, data: SequenceData, codes: np.ndarray, probas: np.ndarray, raw: np.ndarray
    ) -> None:
        lay = data.layout
        names = np.array(data.tag_names, dtype=object)
        lengths = lay.lengths
        sent = np.repeat(np.arange(lengths.size), lengths)
        pos = np.arange(sent.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = lay.rows(sent, pos)
        c = codes[rows]
        conf = probas[rows, raw[rows]]
        task = data.task_names.take(sent)
        self.data_ = data
        self.tag_names_ = data.tag_names
        self.labels_ = list(data.labels)
        self.probas_ = probas[rows]
        self.tags_ = pd.DataFrame(
            {"task": task, "position": pos.astype(np.int64), "tag": names[c], "confidence": conf}
        )
        # entities: valid IOB2, so an entity starts at each B and runs over the following I
        is_b = (c > 0) & (c % 2 == 1)
        in_ent = c > 0
        ent_id = np.cumsum(is_b) - 1
        idx = np.flatnonzero(in_ent)
        eid = ent_id[idx]
        n_ent = int(is_b.sum())
        size = np.bincount(eid, minlength=n_ent)
        conf_sum = np.bincount(eid, weights=conf[idx], minlength=n_ent)
        b_idx = np.flatnonzero(is_b)
        self.entities_ = pd.DataFrame(
            {
                "task": data.task_names.take(sent[b_idx]),
                "start": pos[b_idx].astype(np.int64),
                "end": (pos[b_idx] + size).astype(np.int64),
                "label": np.array(data.labels, dtype=object)[(c[b_idx] - 1) // 2],
                "confidence": conf_sum / np.maximum(size, 1),
            }
        )


class TokenMajorityVote(_SequenceAggregator):
    """Token-wise majority vote, then :func:`.bio.repair`. ``ties="O"``: a tie that includes
    ``O`` goes to ``O``, other ties to the first tag in ``tag_names_`` order; ``ties="entity"``:
    ties go to the first tied entity tag (``O`` only if nothing else is tied).
    ``confidence`` = vote share of the chosen tag."""

    def __init__(self, ties: str = "O", labels: Sequence[str] | None = None) -> None:
        if ties not in ("O", "entity"):
            raise ValidationError(f"ties must be 'O' or 'entity', got {ties!r}", param="ties")
        self.ties = ties
        self.labels = labels

    def _decide(self, data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
        counts = data.counts()
        probas = counts / counts.sum(axis=1, keepdims=True)
        score = counts.copy()
        if self.ties == "entity":
            score[:, 0] -= 0.5
        codes = score.argmax(axis=1)
        return _repair_codes(codes, data.layout), probas, codes


class TokenDawidSkene(_SequenceAggregator):
    """:class:`~cynaps_data.consensus.DawidSkene` on every (task, position) as its own item
    (full confusion per worker over the ``K`` tags, no sequence model), then
    :func:`.bio.repair`. ``params`` go to ``DawidSkene`` (e.g. ``n_iter``, ``tol``)."""

    def __init__(self, labels: Sequence[str] | None = None, **params: Any) -> None:
        self.labels = labels
        self.params = params

    def _decide(self, data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
        from .dawid_skene import dawid_skene_arrays

        res = dawid_skene_arrays(
            data.row,
            data.worker,
            data.tag,
            data.layout.n_tokens,
            data.n_workers,
            data.k,
            **self.params,
        )
        self.confusions_ = _confusion_frame(data, res.errors.transpose(0, 2, 1))
        raw = res.labels.astype(np.int64)
        return _repair_codes(raw, data.layout), res.probas, raw


def _dirichlet_log_mean(counts: np.ndarray, axis: int) -> np.ndarray:
    counts = np.maximum(counts, 1e-10)
    return digamma(counts) - digamma(counts.sum(axis=axis, keepdims=True))


class BayesianSequenceCombination(_SequenceAggregator):
    r"""Bayesian HMM over true tags with per-worker, per-tag confusions (BSC-seq); see the module
    docstring for the model and the variational updates.

    Parameters
    ----------
    annotator : "seq" or "full"
        "seq": each worker's confusion also depends on the tag they gave the previous token;
        "full": one ``K x K`` confusion per worker.
    alpha_diag, alpha_off : float
        Dirichlet pseudo-counts of the confusions on the correct tag and on every other tag;
        ``alpha_diag=None`` (default): 5 when the frame has a ``token`` column, else 3 (each
        the better on the CoNLL-2003 MTurk val half).
    beta : float
        Dirichlet pseudo-count on every IOB2-valid transition (invalid ones are zero).
    n_iter, tol : int, float
        At most ``n_iter`` VB rounds; stop when no token marginal changes by more than ``tol``.
    decode : "viterbi" or "marginal"
        Most probable path, or per-token most probable tag then repair.
    alpha_invalid : float, optional
        Pseudo-count of a worker's own IOB2-invalid steps ("seq" only); None: ``alpha_off``.
    word_prior : float or None
        Dirichlet pseudo-count :math:`\omega` of the word model, used when the frame has a
        ``token`` column; None switches the word model off.
    tagger_rounds : int
        With a ``token`` column: rounds of a cross-fitted text tagger trained on the consensus
        and added as one more annotator, each followed by a refit
        (:mod:`~cynaps_data.consensus.spans_tagger`); 0 switches it off.
    random_state : int
        Seed of the tagger's split of the sentences into folds.
    labels : list of str, optional
        Entity labels (fixes the tag set and order); default: those seen, sorted.
    """

    def __init__(
        self,
        annotator: str = "seq",
        alpha_diag: float | None = None,
        alpha_off: float = 0.7,
        beta: float = 1.0,
        n_iter: int = 20,
        tol: float = 1e-3,
        decode: str = "viterbi",
        alpha_invalid: float | None = None,
        word_prior: float | None = 1.0,
        tagger_rounds: int = 3,
        random_state: int = 0,
        labels: Sequence[str] | None = None,
    ) -> None:
        for name, val, ok in (
            ("annotator", annotator, ("seq", "full")),
            ("decode", decode, ("viterbi", "marginal")),
        ):
            if val not in ok:
                raise ValidationError(f"{name} must be one of {ok}, got {val!r}", param=name)
        for name, val in (
            ("alpha_diag", 1.0 if alpha_diag is None else alpha_diag),
            ("alpha_off", alpha_off),
            ("beta", beta),
        ):
            if not val > 0:
                raise ValidationError(f"{name} must be > 0, got {val!r}", param=name)
        if int(n_iter) < 1:
            raise ValidationError("n_iter must be >= 1", param="n_iter")
        if (
            isinstance(tagger_rounds, (bool, np.bool_))
            or not isinstance(tagger_rounds, (int, np.integer))
            or tagger_rounds < 0
        ):
            raise ValidationError(
                f"tagger_rounds must be an integer >= 0, got {tagger_rounds!r}",
                param="tagger_rounds",
            )
        self.annotator = annotator
        self.alpha_diag = None if alpha_diag is None else float(alpha_diag)
        self.alpha_off = float(alpha_off)
        self.beta = float(beta)
        self.n_iter = int(n_iter)
        self.tol = float(tol)
        self.decode = decode
        self.alpha_invalid = None if alpha_invalid is None else float(alpha_invalid)
        self.word_prior = None if word_prior is None else float(word_prior)
        self.tagger_rounds = int(tagger_rounds)
        self.random_state = random_state
        self.labels = labels

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        keys = (
            "annotator",
            "alpha_diag",
            "alpha_off",
            "beta",
            "n_iter",
            "tol",
            "decode",
            "alpha_invalid",
            "word_prior",
            "tagger_rounds",
            "random_state",
        )
        return {k: getattr(self, k) for k in (*keys, "labels")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _decide(self, data: SequenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._vb(data)
        if not self.tagger_rounds or data.word_names is None:
            return out
        from .spans_tagger import TextTagger, tagger_name, with_tagger

        tagger = TextTagger(data, random_state=self.random_state)
        name = tagger_name(data.worker_names)
        for _ in range(self.tagger_rounds):
            out = self._vb(with_tagger(data, tagger.tags(out[1]), name))
        # the tagger is no worker of the user's: its skill is reported apart
        self.tagger_skill_ = float(self.skills_[name])
        self.skills_ = self.skills_.drop(name)
        self.confusions_ = self.confusions_.drop(name, level="worker")
        return out

    def _diag(self, data: SequenceData) -> float:
        """``alpha_diag``; by default 5 when the words are read (``token`` column), else 3."""
        if self.alpha_diag is not None:
            return self.alpha_diag
        return 5.0 if data.word_names is not None else 3.0

    def _vb(self, data: SequenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k, n_w, lay = data.k, data.n_workers, data.layout
        n = lay.n_tokens
        kp = k if self.annotator == "seq" else 1
        prev = data.prev if kp > 1 else np.zeros_like(data.prev)
        col = (data.worker * kp + prev) * k + data.tag
        a = sp.csr_matrix(
            (np.ones(col.size), (data.row, col)), shape=(n, n_w * kp * k), dtype=np.float64
        )
        at = a.T.tocsr()
        allowed = _valid_transitions(k)
        prior = np.full((n_w, kp, k, k), self.alpha_off)  # [w, prev, observed, true]
        idx = np.arange(k)
        prior[:, :, idx, idx] = self._diag(data)
        if kp > 1 and self.alpha_invalid is not None:
            # a worker's own invalid IOB2 step (prev p -> reported c) is a priori rare
            prior[:, ~allowed, :] = self.alpha_invalid
        beta = np.where(allowed, self.beta, 0.0)
        feats = []  # (token rows, word codes, vocabulary size) of the word model
        if self.word_prior is not None and data.word is not None:
            known = data.word >= 0
            feats.append((np.flatnonzero(known), data.word[known], data.n_words))

        def log_emission(gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            counts = (at @ gamma).reshape(n_w, kp, k, k) + prior
            log_e = _dirichlet_log_mean(counts, axis=2)
            log_emit = a @ np.ascontiguousarray(log_e.reshape(n_w * kp * k, k))
            for wrow, wcode, n_v in feats:
                wc = np.stack(
                    [np.bincount(wcode, weights=gamma[wrow, j], minlength=n_v) for j in range(k)],
                    axis=1,
                )
                wc += self.word_prior
                log_rho = digamma(wc) - digamma(wc.sum(axis=0, keepdims=True))
                log_emit[wrow] += log_rho[wcode]
            return log_emit, counts

        gamma = data.counts()
        gamma /= gamma.sum(axis=1, keepdims=True)
        # start from MV marginals: transitions from adjacent MV marginals' outer products
        xi = _mv_transitions(gamma, lay) * allowed
        it = 0
        for it in range(1, self.n_iter + 1):  # noqa: B007
            log_emit, _ = log_emission(gamma)
            log_t = np.where(allowed, _dirichlet_log_mean(xi + beta, axis=1), -np.inf)
            emit = np.exp(log_emit - log_emit.max(axis=1, keepdims=True))
            new_gamma, xi, _ = forward_backward(lay, np.exp(log_t), emit)
            delta = float(np.abs(new_gamma - gamma).max())
            gamma = new_gamma
            if delta < self.tol:
                break
        self.n_iter_ = it
        log_emit, counts = log_emission(gamma)
        self._set_reliability(data, counts, xi + beta, gamma, allowed)
        if self.decode == "viterbi":
            log_t = np.where(allowed, _dirichlet_log_mean(xi + beta, axis=1), -np.inf)
            codes = viterbi(lay, log_t, log_emit)
            return codes, gamma, codes
        raw = gamma.argmax(axis=1)
        return _repair_codes(raw, lay), gamma, raw

    def _set_reliability(
        self,
        data: SequenceData,
        counts: np.ndarray,
        trans_counts: np.ndarray,
        gamma: np.ndarray,
        allowed: np.ndarray,
    ) -> None:
        names = data.tag_names
        n_w = data.n_workers
        # P(y | z) per worker: counts summed over the previous tag, normalised over observed
        c2 = counts.sum(axis=1)  # (w, observed, true)
        conf = c2 / c2.sum(axis=1, keepdims=True)
        self.confusions_ = _confusion_frame(data, conf.transpose(0, 2, 1))
        # expected share of each worker's tags equal to the truth
        hit = gamma[data.row, data.tag]
        n_ans = np.bincount(data.worker, minlength=n_w)
        self.skills_ = pd.Series(
            np.bincount(data.worker, weights=hit, minlength=n_w) / np.maximum(n_ans, 1),
            index=data.worker_names,
            name="skill",
        )
        t = np.where(allowed, trans_counts, 0.0)
        self.transitions_ = pd.DataFrame(
            t / t.sum(axis=1, keepdims=True), index=names, columns=names
        )


def _confusion_frame(data: SequenceData, conf: np.ndarray) -> pd.DataFrame:
    """``conf[w, true, reported]`` -> DataFrame indexed by (``worker``, true ``tag``), one
    column per reported tag."""
    names = data.tag_names
    idx = pd.MultiIndex.from_product([data.worker_names, names], names=["worker", "tag"])
    return pd.DataFrame(conf.reshape(-1, len(names)), index=idx, columns=names)


def _mv_transitions(gamma: np.ndarray, lay: Layout) -> np.ndarray:
    """Summed outer products of consecutive tokens' marginals (plus O -> first token)."""
    k = gamma.shape[1]
    xi = np.zeros((k, k))
    blocks = lay.blocks()
    off0, m0 = blocks[0]
    xi[0] += gamma[off0 : off0 + m0].sum(axis=0)
    for (po, _), (off, m) in zip(blocks[:-1], blocks[1:], strict=True):
        xi += gamma[po : po + m].T @ gamma[off : off + m]
    return xi
