r"""The default aggregator (``method="auto"``): a linear opinion pool of MV, DS and EBCC.

.. math:: \hat p_{tc} = \tfrac13\big(p^{MV}_{tc} + p^{DS}_{tc} + p^{EBCC}_{tc}\big),
          \qquad \hat z_t = \arg\max_c \hat p_{tc}.

Why: on the 14 real crowd datasets (see ``docs/consensus.md``) each model fails somewhere
different. Dawid-Skene is best on graded relevance (web, relevance_s4, trec2010) but
over-estimates the minority class on the ZenCrowd sets; EBCC's subtype mixture fixes ZenCrowd
(+5 to +9 points) but collapses on 5-grade web relevance; majority vote never wins but never
collapses. Averaging the three posteriors (a linear pool, which is robust to one member being
confidently wrong, unlike a log pool) had the best mean accuracy of every combination of MV,
DS, one-coin DS, GLAD, smoothed DS and EBCC we measured, with one fixed setting for all
datasets and no per-dataset choice.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ._base import ArrayResult, BaseAggregator, argmax_rows, rng_from
from ._encode import Encoded
from .dawid_skene import dawid_skene_arrays
from .ebcc import ebcc_arrays
from .majority_vote import majority_vote_arrays

__all__ = ["ConsensusEnsemble"]


class ConsensusEnsemble(BaseAggregator):
    """Linear pool of MajorityVote, DawidSkene and EBCC posteriors (the ``"auto"`` method).

    Parameters: ``weights`` (three non-negative pool weights for MV, DS, EBCC; default equal),
    ``random_state`` (EBCC init and tie-breaking), ``labels``.

    Fitted: ``labels_``, ``probas_`` (the pooled posterior), ``priors_``, ``skills_`` (DS
    expected accuracy), ``errors_`` (DS confusion matrices), ``loss_history_`` (DS),
    ``n_iter_`` (DS + EBCC iterations), ``members_`` (dict of member ``probas`` arrays).
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0),
        random_state: Any = 0,
        labels: Sequence[Hashable] | None = None,
    ) -> None:
        self.weights = weights
        self.random_state = random_state
        self.labels = labels

    def _fit_encoded(self, enc: Encoded, gold: np.ndarray) -> ArrayResult:
        args = (enc.task, enc.worker, enc.label, enc.n_tasks, enc.n_workers, enc.n_classes)
        inc = (enc.incidence(), enc.incidence_t())
        mv = majority_vote_arrays(*args, gold=gold, compute_skills=False)
        ds = dawid_skene_arrays(*args, gold=gold, random_state=self.random_state, incidence=inc)
        eb = ebcc_arrays(*args, gold=gold, random_state=self.random_state, incidence=inc)
        wts = np.asarray(self.weights, dtype=np.float64)
        q = wts[0] * mv.probas + wts[1] * ds.probas + wts[2] * eb.probas
        q /= q.sum(axis=1, keepdims=True)
        labels = argmax_rows(q, rng_from(self.random_state))
        self.members_ = {"mv": mv.probas, "ds": ds.probas, "ebcc": eb.probas}
        return ArrayResult(
            probas=q,
            labels=labels,
            priors=q.mean(axis=0),
            skills=ds.skills,
            errors=ds.errors,
            loss_history=ds.loss_history,
            n_iter=ds.n_iter + eb.n_iter,
        )
