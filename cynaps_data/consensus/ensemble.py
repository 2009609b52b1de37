r"""The default aggregator (``method="auto"``): one fixed rule, driven by the number of classes.

* **K = 2 classes**: EBCC (subtype mixture, variational Bayes), its posterior averaged over
  ``ebcc_restarts`` (5) seeded random initialisations of the subtypes:
  :math:`\hat p_t = \frac1R \sum_r p^{EBCC,r}_t`.
* **K >= 3 classes**: linear opinion pool of Dawid-Skene and MACE,
  :math:`\hat p_t = \frac12 (p^{DS}_t + p^{MACE}_t)`.

:math:`\hat z_t = \arg\max_c \hat p_{tc}`. The pooled posterior is then calibrated without gold
(``calibration="resample"``, :func:`~cynaps_data.consensus.calibration.resampled_confidence`):
each row is tempered so its top probability is the label's average posterior over vote
bootstraps, then every row by the design effect of correlated answers,
:math:`\beta = 1/(1 + (\bar n - 1)\rho)` with :math:`\bar n` answers per task and
``answer_correlation`` :math:`\rho = 0.05`
(:func:`~cynaps_data.consensus.calibration.design_effect_temper`); monotone maps, so
:math:`\hat z` is unchanged. The branch depends only on the class set (``labels=``
if given, else the labels that occur in the answers), never on gold or on the dataset.

Why (measured on the 14 real crowd datasets, ``docs/consensus.md``): with two classes a full
confusion matrix has no more freedom than a one-coin model, and the errors that matter are
*correlated* (ZenCrowd: groups of workers make the same false-positive links), which EBCC's
latent subtypes capture: EBCC is the best single model on the 9 binary sets. With three or more
classes EBCC's per-(class, subtype) confusion matrices are too flexible and collapse on graded
relevance (web: 0.66 vs DS 0.83), while DS's class-dependent confusions and MACE's
"knows or spams" model make different mistakes, so their average beats both. One EBCC fit
depends on the random subtype initialisation (+-0.01 on single sets); averaging 5 restarts
removes most of that. Selecting the pools per branch by leave-one-dataset-out gives 0.8325 on the
held-out sets, so the rule is not an artefact of fitting 14 numbers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from ._base import (
    ArrayResult,
    BaseAggregator,
    aggregator_params,
    argmax_rows,
    check_choice,
    check_positive_count,
    fix_gold,
    rng_from,
)
from ._encode import Encoded
from .calibration import design_effect_temper, resampled_confidence
from .dawid_skene import dawid_skene_arrays
from .ebcc import ebcc_arrays
from .mace import mace_arrays

__all__ = ["ConsensusEnsemble", "ensemble_arrays"]


def ensemble_arrays(
    task: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_tasks: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    *,
    ebcc_restarts: int = 5,
    calibration: str = "resample",
    answer_correlation: float = 0.05,
    gold: np.ndarray | None = None,
    random_state: Any = 0,
    incidence: tuple | None = None,
) -> tuple[ArrayResult, dict[str, np.ndarray]]:
    """The ``"auto"`` rule on integer codes; returns the result and the members' ``probas``."""
    check_positive_count(ebcc_restarts, "ebcc_restarts")
    check_choice(calibration, ("resample", "none"), "calibration")
    if not 0.0 <= answer_correlation <= 1.0:
        raise ValidationError("answer_correlation must be in [0, 1]", param="answer_correlation")
    args = (task, worker, label, n_tasks, n_workers, n_classes)
    k = int(n_classes) if n_classes is not None else int(np.max(label)) + 1
    rng = rng_from(random_state)
    if k <= 2:
        fits = [
            ebcc_arrays(*args, gold=gold, random_state=rng, incidence=incidence)
            for _ in range(ebcc_restarts)
        ]
        members = {f"ebcc{r}": f.probas for r, f in enumerate(fits)}
        q = np.mean([f.probas for f in fits], axis=0)
        n_iter = sum(f.n_iter for f in fits)
        skills, errors, hist = fits[0].skills, fits[0].errors, fits[0].loss_history
    else:
        ds = dawid_skene_arrays(*args, gold=gold, random_state=rng, incidence=incidence)
        ma = mace_arrays(*args, gold=gold, random_state=rng)
        members = {"ds": ds.probas, "mace": ma.probas}
        q = 0.5 * (ds.probas + ma.probas)
        skills, errors, hist = ds.skills, ds.errors, ds.loss_history
        n_iter = ds.n_iter + ma.n_iter
    q /= q.sum(axis=1, keepdims=True)
    raw = q
    if calibration == "resample":
        n_w = int(n_workers) if n_workers is not None else int(np.max(worker)) + 1
        n_mean = np.size(task) / q.shape[0]
        # calibrate over the classes that occur (answers or gold) only: a declared class nobody
        # chose keeps its (tiny) raw posterior instead of receiving the tempered-away mass
        lab = np.asarray(label, dtype=np.int64)
        used = np.bincount(lab, minlength=k) > 0
        if gold is not None and (gold >= 0).any():
            used |= np.bincount(gold[gold >= 0], minlength=k) > 0
        if used.all():
            q = resampled_confidence(task, worker, lab, q, n_w, random_state=rng)
            q = design_effect_temper(q, n_mean, answer_correlation)
        else:
            mass = q[:, used].sum(axis=1, keepdims=True)
            sub = q[:, used] / mass
            sub_label = (np.cumsum(used) - 1)[lab]
            sub = resampled_confidence(task, worker, sub_label, sub, n_w, random_state=rng)
            sub = design_effect_temper(sub, n_mean, answer_correlation)
            q = q.copy()
            q[:, used] = sub * mass
        q = fix_gold(q, gold)
    labels = argmax_rows(q, rng)
    res = ArrayResult(
        probas=q,
        labels=labels,
        priors=q.mean(axis=0),
        skills=skills,
        errors=errors,
        loss_history=list(hist),
        n_iter=n_iter,
        extra={"uncalibrated": raw},
    )
    return res, members


@aggregator_params
class ConsensusEnsemble(BaseAggregator):
    """The ``"auto"`` method: EBCC (5 restarts averaged) for 2 classes, DS + MACE pool for >= 3.

    Parameters: ``ebcc_restarts`` (5), ``calibration`` (``"resample"``: gold-free calibrated
    confidence, :func:`~cynaps_data.consensus.calibration.resampled_confidence` then
    :func:`~cynaps_data.consensus.calibration.design_effect_temper`; ``"none"``: the
    raw pooled posterior), ``answer_correlation`` (0.05: the intra-task correlation
    :math:`\rho` of the design effect; 0 skips that step), ``random_state`` (EBCC/MACE initialisation and
    tie-breaking), ``labels``.

    Fitted: ``labels_``, ``probas_`` (the pooled posterior), ``priors_``, ``skills_`` and
    ``errors_`` (EBCC's class-level confusion for 2 classes, DS's for >= 3), ``loss_history_``,
    ``n_iter_`` (summed over members), ``members_`` (dict of member ``probas`` arrays),
    ``uncalibrated_probas_`` (DataFrame task x label: the pooled posterior before calibration;
    equal to ``probas_`` with ``calibration="none"``).
    """

    _arrays = staticmethod(ensemble_arrays)
    _takes_incidence = True

    ebcc_restarts: int = 5
    calibration: str = "resample"
    random_state: Any = 0
    labels: Sequence[Hashable] | None = None
    answer_correlation: float = 0.05

    def _finish_fit(
        self, enc: Encoded, out: tuple[ArrayResult, dict[str, np.ndarray]]
    ) -> ArrayResult:
        res, self.members_ = out
        self.uncalibrated_probas_ = pd.DataFrame(
            res.extra["uncalibrated"], index=enc.task_names, columns=enc.label_names
        )
        return res
