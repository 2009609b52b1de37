"""Maths shared by the preference types (``pairwise`` and ``ranking``): vote shares, position
bias, rankings as pairs, and the deterministic pseudo-truth scores of the sandbox workforce.

Data contracts
--------------
- a *choice* is ``"a"`` (the task's first candidate), ``"b"`` (the second) or ``"tie"``;
- a *shown* order of a pair is ``"ab"`` (``a`` was shown left) or ``"ba"`` (``b`` left);
- an *order* (a ranking) is a list of candidate positions ``0 … n-1``, best first;
- a *comparisons* frame (what :mod:`cynaps_data.consensus.pairwise` models fit) has one row
  per judged pair: ``worker`` (str), ``left`` and ``right`` (str item ids, as shown),
  ``label`` (str, the winning item id; ``"tie"`` for a tie, null for a tie of two items one
  of which is itself called ``"tie"``), ``task`` (int64).

Position bias (per task or per annotator): among the *decisive* judgements (no tie) whose
display order is known, the share that chose the candidate shown on the left,

.. math::  \\hat p_{left} = \\frac{\\#\\{\\text{left chosen}\\}}{\\#\\{\\text{decisive}\\}},

with the two-sided binomial test of :math:`p_{left} = 1/2` (exact) as ``p_value``: an annotator
who always picks the left candidate has :math:`\\hat p_{left} = 1` and a small p-value.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

CHOICES = ("a", "b", "tie")
SHOWN = ("ab", "ba")
#: how a ranking becomes pairs: every pair, neighbours in the order, or best against worst
PAIR_MODES = ("all", "adjacent", "best_worst")


def item_score(item_id: str) -> float:
    """A deterministic standard-normal 'true quality' of an item (the sandbox's pseudo-truth):
    the inverse normal CDF of a uniform number taken from the SHA-256 of the item id."""
    digest = hashlib.sha256(f"cynaps-item:{item_id}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2.0**64
    return float(_norm_ppf(u))


def _norm_ppf(u: float) -> float:
    # Acklam's rational approximation (relative error < 1.2e-9): no scipy at import time
    a = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269,
         -30.66479806614716, 2.506628277459239)  # fmt: skip
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
         -13.28068155288572)  # fmt: skip
    c = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
         4.374664141464968, 2.938163982698783)  # fmt: skip
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    low = 0.02425
    if u < low:
        q = math.sqrt(-2 * math.log(u))
        num = ((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]
        return num / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if u > 1 - low:
        return -_norm_ppf(1 - u)
    q = u - 0.5
    r = q * q
    num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
    return num / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def member_bias(accuracy: float, scale: float) -> float:
    """A simulated annotator's own position bias on the logit scale (> 0 favours the left /
    top candidate), fixed per member: from a hash of its accuracy (the only per-member input a
    type's ``simulate`` gets), up to ``scale * (1 - accuracy)`` in size."""
    digest = hashlib.sha256(f"position:{float(accuracy)!r}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2.0**64 * 2 - 1
    return unit * scale * max(0.0, 1.0 - float(accuracy))


def choice_shares(choices: Sequence[str]) -> dict[str, float]:
    """``{"a": share, "b": share, "tie": share}`` of the votes (zeros without votes)."""
    n = len(choices)
    return {c: (sum(1 for x in choices if x == c) / n if n else 0.0) for c in CHOICES}


def binomial_p_value(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (1.0 when n = 0)."""
    if n == 0:
        return 1.0
    probs = np.array([math.comb(n, i) for i in range(n + 1)], dtype="float64") / 2.0**n
    observed = probs[k]
    return float(min(1.0, probs[probs <= observed * (1 + 1e-9)].sum()))


def left_choices(choices: Iterable[str | None], shown: Iterable[str | None]) -> list[bool]:
    """For each decisive vote with a known display order: True when the left one was chosen."""
    out = []
    for choice, order in zip(choices, shown, strict=True):
        if choice in ("a", "b") and order in SHOWN:
            out.append(order[0] == choice)
    return out


def position_bias_of(lefts: Sequence[bool]) -> dict[str, Any]:
    """``{"n_decisive", "left_rate", "p_value"}`` of a list from :func:`left_choices`
    (``left_rate`` is None without decisive votes)."""
    n = len(lefts)
    k = int(sum(lefts))
    return {
        "n_decisive": n,
        "left_rate": (k / n) if n else None,
        "p_value": binomial_p_value(k, n),
    }


def ranking_pairs(order: Sequence[int], mode: str = "all") -> list[tuple[int, int]]:
    """The ``(winner, loser)`` pairs an order (best first) implies: ``all`` the n(n-1)/2
    pairs, ``adjacent`` each candidate over the next one, ``best_worst`` the first over the
    last. Positions are returned as given."""
    if mode not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}, got {mode!r}")
    order = list(order)
    if len(order) < 2:
        return []
    if mode == "adjacent":
        return list(zip(order[:-1], order[1:], strict=True))
    if mode == "best_worst":
        return [(order[0], order[-1])]
    return list(combinations(order, 2))


def mean_ranks(orders: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Each candidate's mean rank (1 = best) over the orders, float64 of length ``n``."""
    ranks = np.zeros((len(orders), n))
    for i, order in enumerate(orders):
        ranks[i, list(order)] = np.arange(1, n + 1)
    return ranks.mean(axis=0) if len(orders) else np.full(n, np.nan)


def kendall_w(orders: Sequence[Sequence[int]], n: int) -> float:
    """Kendall's coefficient of concordance W of ``m`` complete orders of ``n`` candidates,

    .. math::  W = \\frac{12 S}{m^2 (n^3 - n)},\\quad S = \\sum_i (R_i - \\bar R)^2,

    where :math:`R_i` is candidate i's rank sum; 1 = every annotator gave the same order, 0 =
    no agreement. One order (m = 1) is 1.0 by definition; n < 2 is 1.0."""
    m = len(orders)
    if m == 0:
        return float("nan")
    if m == 1 or n < 2:
        return 1.0
    sums = mean_ranks(orders, n) * m
    s = float(((sums - sums.mean()) ** 2).sum())
    return s * 12 / (m**2 * (n**3 - n))


def consensus_order(orders: Sequence[Sequence[int]], n: int) -> list[int]:
    """The Borda order: candidates by mean rank, ties by position."""
    ranks = mean_ranks(orders, n)
    return [int(i) for i in np.lexsort((np.arange(n), ranks))]


__all__ = [
    "CHOICES",
    "PAIR_MODES",
    "SHOWN",
    "binomial_p_value",
    "choice_shares",
    "consensus_order",
    "item_score",
    "kendall_w",
    "left_choices",
    "logit",
    "mean_ranks",
    "member_bias",
    "position_bias_of",
    "ranking_pairs",
    "sigmoid",
]
