r"""Bounding boxes: IoU, matching of annotators' boxes into clusters, robust per-task consensus
and agreement (issue 15). The across-task aggregators are in :mod:`.boxes_model`.

A box is a dict ``{"x", "y", "width", "height", "label"}`` in pixels, ``(x, y)`` its top-left
corner; internally boxes are float64 arrays of edges :math:`(x_1, y_1, x_2, y_2)` with
:math:`x_2 = x + \text{width}`, :math:`y_2 = y + \text{height}`.

**IoU.** :math:`\mathrm{IoU}(a, b) = |a \cap b| / |a \cup b|` with
:math:`|a \cap b| = \max(0, \min(a_{x_2}, b_{x_2}) - \max(a_{x_1}, b_{x_1})) \cdot
\max(0, \min(a_{y_2}, b_{y_2}) - \max(a_{y_1}, b_{y_1}))` and
:math:`|a \cup b| = |a| + |b| - |a \cap b|`; 0 when the union is empty (two zero-area boxes).

**Clustering** (:func:`cluster_boxes`, the matching of BASELINE.md and of SageMaker Ground
Truth's box consolidation): within a group (an image, or an image and class), repeatedly take
the unassigned box with the most unassigned neighbours (boxes of *other* annotators with
IoU :math:`\ge \tau`) as a seed; every other annotator adds at most one box to the seed's
cluster, its unassigned box of highest IoU with the seed provided that IoU is :math:`\ge \tau`.
So a cluster holds at most one box per annotator, and every box ends in exactly one cluster
(possibly alone). Ties go to the canonical order (annotator, then coordinates), so the result
does not depend on the input order. All groups are processed together: groups of similar
size are padded into ``(n_groups, B, B)`` IoU blocks and each step picks one seed per group with
numpy, so the Python loop runs over clustering steps, not over images.

**Consensus** (:func:`merge_task`): the clusters of one task's boxes (all classes together);
a cluster's *support* is the share of the task's annotators with a box in it (annotators who
answered "nothing to box" count in the denominator); kept when support :math:`\ge` ``min_support``;
its box is the coordinate-wise median of its members' edges (the median of
:math:`x_1` and of :math:`x_2` etc.; since every member has :math:`x_2 \ge x_1`, so does the
median box) and its label the most common member label (ties: the smallest label text).

**Agreement** (:func:`box_agreement`): for two annotators' boxes :math:`A, B` matched one-to-one
greedily by decreasing IoU (pairs with IoU :math:`\ge 0.5` and the same label),
:math:`F_1(A, B) = 2\,TP / (|A| + |B|)`, and :math:`F_1 = 1` when both are empty (they agree
that there is nothing to box). The task's ``f1`` is the mean over annotator pairs and
``mean_iou`` the mean IoU over all matched pairs (1.0 when no annotator drew a box, 0.0 when
boxes were drawn but none matched). With fewer than two annotators both are 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError

__all__ = [
    "box_agreement",
    "box_f1",
    "cluster_boxes",
    "group_median",
    "iou_matrix",
    "match_boxes",
    "merge_task",
]

#: padded IoU block size (elements) per clustering chunk: bounds the memory of a chunk
#: (about 25 bytes per element) while keeping numpy calls large
_CHUNK_ELEMS = 1_500_000


def _edges(xywh: np.ndarray) -> np.ndarray:
    """``(n, 4)`` x, y, width, height -> ``(n, 4)`` x1, y1, x2, y2 (float64)."""
    a = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)


def _iou_edges(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of edge boxes broadcast over leading axes: ``a[..., :, None, :]`` vs
    ``b[..., None, :, :]`` -> ``(..., n, m)``."""
    ax1, ay1, ax2, ay2 = (a[..., :, None, k] for k in range(4))
    bx1, by1, bx2, by2 = (b[..., None, :, k] for k in range(4))
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``(n, 4)`` with every box of ``b`` ``(m, 4)``, both as
    x, y, width, height (top-left corner); returns float64 ``(n, m)`` (0 for disjoint boxes and
    for two zero-area boxes). Vectorised, no Python loop."""
    ea, eb = _edges(a), _edges(b)
    return _iou_edges(ea, eb)


def match_boxes(
    a: np.ndarray,
    b: np.ndarray,
    iou: float = 0.5,
    labels_a: Sequence[Any] | None = None,
    labels_b: Sequence[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one greedy matching of boxes ``a`` ``(n, 4)`` and ``b`` ``(m, 4)`` (xywh):
    pairs in order of decreasing IoU (ties: smaller ``a`` index, then ``b`` index) are taken
    while both boxes are free and IoU :math:`\\ge` ``iou`` (and, when labels are given, the
    labels are equal). Returns ``(ia, ib, ious)`` of the matched pairs."""
    m = iou_matrix(a, b)
    if labels_a is not None and labels_b is not None and m.size:
        la = np.asarray(labels_a, dtype=object)[:, None]
        lb = np.asarray(labels_b, dtype=object)[None, :]
        m = np.where(la == lb, m, 0.0)
    ia_all, ib_all = np.nonzero(m >= iou)
    if ia_all.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0)
    v = m[ia_all, ib_all]
    order = np.lexsort((ib_all, ia_all, -v))
    used_a = np.zeros(m.shape[0], dtype=bool)
    used_b = np.zeros(m.shape[1], dtype=bool)
    out_a, out_b, out_v = [], [], []
    for k in order.tolist():
        i, j = int(ia_all[k]), int(ib_all[k])
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            out_a.append(i)
            out_b.append(j)
            out_v.append(float(v[k]))
    return np.asarray(out_a, dtype=np.int64), np.asarray(out_b, dtype=np.int64), np.asarray(out_v)


def box_f1(
    a: np.ndarray,
    b: np.ndarray,
    iou: float = 0.5,
    labels_a: Sequence[Any] | None = None,
    labels_b: Sequence[Any] | None = None,
) -> tuple[float, int, np.ndarray]:
    """``(F1, TP, matched IoUs)`` of two box sets (xywh) under :func:`match_boxes`;
    F1 = 2 TP / (|a| + |b|), 1.0 when both are empty."""
    ia, _, v = match_boxes(a, b, iou, labels_a, labels_b)
    n = len(a) + len(b)
    tp = int(ia.size)
    return (1.0 if n == 0 else 2.0 * tp / n), tp, v


# ---- parsing one task's votes -----------------------------------------------------------------


def _parse_votes(votes: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Votes (one list of box dicts per annotator) -> ``(xywh (N, 4), annotator (N,), labels)``.
    Raises ``ValidationError`` naming ``votes[i][j].<field>`` for a malformed box."""
    if isinstance(votes, (str, bytes, Mapping)) or not isinstance(votes, Sequence):
        raise ValidationError(
            f"votes must be a list of box lists, got {type(votes).__name__}", param="votes"
        )
    rows: list[list[float]] = []
    ann: list[int] = []
    labels: list[Any] = []
    for i, boxes in enumerate(votes):
        if boxes is None:
            boxes = []
        if isinstance(boxes, (str, bytes, Mapping)) or not isinstance(boxes, Sequence):
            raise ValidationError(
                f"votes[{i}] must be a list of boxes, got {type(boxes).__name__}",
                param=f"votes[{i}]",
            )
        for j, box in enumerate(boxes):
            if not isinstance(box, Mapping):
                raise ValidationError(
                    f"votes[{i}][{j}] must be a box dict, got {type(box).__name__}",
                    param=f"votes[{i}][{j}]",
                )
            vals = []
            for k in ("x", "y", "width", "height"):
                v = box.get(k)
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise ValidationError(
                        f"votes[{i}][{j}].{k} must be a number, got {v!r}",
                        param=f"votes[{i}][{j}].{k}",
                    )
                v = float(v)
                if not math.isfinite(v):
                    raise ValidationError(
                        f"votes[{i}][{j}].{k} must be finite, got {v!r}",
                        param=f"votes[{i}][{j}].{k}",
                    )
                if k in ("width", "height") and v < 0:
                    raise ValidationError(
                        f"votes[{i}][{j}].{k} must be >= 0, got {v!r}",
                        param=f"votes[{i}][{j}].{k}",
                    )
                vals.append(v)
            rows.append(vals)
            ann.append(i)
            labels.append(box.get("label"))
    xywh = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return xywh, np.asarray(ann, dtype=np.int64), labels


# ---- batched clustering -----------------------------------------------------------------------


def cluster_boxes(
    group: np.ndarray,
    worker: np.ndarray,
    edges: np.ndarray,
    iou: float = 0.5,
    label: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster boxes within groups (module docstring): ``group`` int ``(N,)`` (e.g. image, or
    image x class code), ``worker`` int ``(N,)`` annotator code, ``edges`` float ``(N, 4)``
    x1, y1, x2, y2; ``label`` optional int ``(N,)`` codes: when given, an annotator's box
    with the seed's label is preferred over a better-overlapping box with another label (both
    must reach ``iou``), so one annotator's overlapping boxes of two classes go to the two
    classes' clusters. Returns int64 ``(N,)`` cluster ids, dense ``0..K-1``, numbered by group
    (ascending code) then by creation step; a cluster never spans two groups.

    Vectorised over groups: groups sorted by size are cut into chunks padded to their largest
    group; each step takes one seed per group (argmax of unassigned-neighbour counts) and, per
    (group, annotator) run, the best unassigned box overlapping the seed (``reduceat``).
    Memory: about 20 bytes per pair of boxes of one group (a chunk holds at least one group),
    so a single image with 2,000 boxes needs about 80 MB; the Python loop runs once per
    clustering step (the largest number of clusters of a group in the chunk)."""
    group = np.asarray(group, dtype=np.int64)
    worker = np.asarray(worker, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.float64).reshape(-1, 4)
    n = group.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # canonical order: group, worker, then coordinates (row-order independent)
    lab = np.zeros(n, dtype=np.int64) if label is None else np.asarray(label, dtype=np.int64)
    order = np.lexsort((lab, edges[:, 3], edges[:, 2], edges[:, 1], edges[:, 0], worker, group))
    g_s, w_s, e_s = group[order], worker[order], edges[order]
    l_s = None if label is None else lab[order]
    gu, gstart, gsize = np.unique(g_s, return_index=True, return_counts=True)
    local_k = np.full(n, -1, dtype=np.int64)  # per sorted row: cluster step within group
    by_size = np.argsort(gsize, kind="stable")
    pos = 0
    while pos < by_size.size:
        b = int(gsize[by_size[pos]])
        # take consecutive groups (ascending size) while the padded block stays in budget
        end = pos + 1
        while end < by_size.size:
            bb = int(gsize[by_size[end]])
            if (end + 1 - pos) * bb * bb > _CHUNK_ELEMS and end > pos:
                break
            b = bb
            end += 1
        _cluster_chunk(by_size[pos:end], gstart, gsize, b, w_s, e_s, l_s, local_k, iou)
        pos = end
    # dense ids: by group code, then step
    key = np.repeat(np.arange(gu.size, dtype=np.int64), gsize) * (n + 1) + local_k
    _, dense = np.unique(key, return_inverse=True)
    out = np.empty(n, dtype=np.int64)
    out[order] = dense.ravel()
    return out


def _iou_block(e: np.ndarray) -> np.ndarray:
    """``(ng, b, 4)`` float32 edges -> ``(ng, b, b)`` float32 IoU within each group, with few
    temporaries (the clustering's hot spot); zero-area boxes have IoU 0."""
    x1, y1, x2, y2 = (e[:, :, k] for k in range(4))
    iw = np.minimum(x2[:, :, None], x2[:, None, :])
    iw -= np.maximum(x1[:, :, None], x1[:, None, :])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(y2[:, :, None], y2[:, None, :])
    ih -= np.maximum(y1[:, :, None], y1[:, None, :])
    np.maximum(ih, 0, out=ih)
    iw *= ih  # intersection
    area = (x2 - x1) * (y2 - y1)
    union = area[:, :, None] + area[:, None, :]
    union -= iw
    np.maximum(union, np.float32(1e-30), out=union)
    iw /= union
    return iw


def _cluster_chunk(
    gidx: np.ndarray,
    gstart: np.ndarray,
    gsize: np.ndarray,
    b: int,
    w_s: np.ndarray,
    e_s: np.ndarray,
    l_s: np.ndarray | None,
    local_k: np.ndarray,
    thr: float,
) -> None:
    """Cluster the groups ``gidx`` (indices into ``gstart``/``gsize``), padded to ``b`` boxes;
    writes each box's step number into ``local_k`` (sorted-row positions)."""
    ng = gidx.size
    cols = np.arange(b)
    rowpos = gstart[gidx][:, None] + cols[None, :]  # (ng, b) sorted-row positions
    valid = cols[None, :] < gsize[gidx][:, None]
    rowpos = np.where(valid, rowpos, 0)
    wk = np.where(valid, w_s[rowpos], -1)
    lk = None if l_s is None else l_s[rowpos]
    e = e_s[rowpos].astype(np.float32)
    e[~valid] = 0.0
    iou = _iou_block(e)  # (ng, b, b) float32
    adj = iou >= thr
    adj &= wk[:, :, None] != wk[:, None, :]
    if thr <= 0:
        adj &= valid[:, :, None] & valid[:, None, :]
    counts = adj.sum(axis=2, dtype=np.int64)
    assigned = ~valid
    step_k = np.full((ng, b), -1, dtype=np.int64)
    # runs of equal (group, worker) in the flattened block: the reduceat segments
    flat_w = wk.ravel()
    flat_g = np.repeat(np.arange(ng), b)
    new_seg = np.ones(ng * b, dtype=bool)
    new_seg[1:] = (flat_w[1:] != flat_w[:-1]) | (flat_g[1:] != flat_g[:-1])
    seg_start = np.flatnonzero(new_seg)
    seg_id = np.cumsum(new_seg) - 1
    flat_idx = np.arange(ng * b)
    big = ng * b
    ar = np.arange(ng)
    k = 0
    while True:
        act = ~assigned.all(axis=1)
        if not act.any():
            break
        cand = np.where(assigned, -1, counts)
        seed = cand.argmax(axis=1)
        row = iou[ar, seed]  # (ng, b)
        seed_w = wk[ar, seed]
        ok = (~assigned) & (row >= thr) & (wk != seed_w[:, None]) & act[:, None]
        score = np.where(ok, row, -1.0)
        if lk is not None:  # same label as the seed first (IoU <= 1 < the bonus)
            score += 2.0 * (ok & (lk == lk[ar, seed][:, None]))
        score = score.ravel()
        smax = np.maximum.reduceat(score, seg_start)
        hit = (score == smax[seg_id]) & (score >= 0)
        first = np.minimum.reduceat(np.where(hit, flat_idx, big), seg_start)
        chosen = first[first < big]
        ci, cj = np.divmod(chosen, b)
        si = ar[act]
        sj = seed[act]
        all_i = np.concatenate([si, ci])
        all_j = np.concatenate([sj, cj])
        assigned[all_i, all_j] = True
        step_k[all_i, all_j] = k
        # the newly assigned boxes are no longer anyone's unassigned neighbours
        o = np.argsort(all_i, kind="stable")
        all_i, all_j = all_i[o], all_j[o]
        starts = np.flatnonzero(np.r_[True, all_i[1:] != all_i[:-1]])
        counts[all_i[starts]] -= np.add.reduceat(adj[all_i, all_j], starts, axis=0, dtype=np.int64)
        k += 1
    local_k[rowpos[valid]] = step_k[valid]


# ---- grouped statistics -----------------------------------------------------------------------


def group_median(values: np.ndarray, cluster: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per-cluster median of each column of ``values`` ``(N, d)`` (mean of the two middle
    values for an even count); ``cluster`` int ``(N,)`` in ``0..n_clusters-1``, every cluster
    non-empty. Returns ``(n_clusters, d)``. One sort per column, no Python loop over clusters."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    size = np.bincount(cluster, minlength=n_clusters)
    m = int(size.max()) if n_clusters else 0
    if n_clusters * m <= 4 * cluster.size + 1024:
        # small clusters: pad to (n_clusters, m) with +inf and sort each row
        o = np.argsort(cluster, kind="stable")
        c_s = cluster[o]
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        slot = np.arange(cluster.size) - start[c_s]
        lo, hi = (size - 1) // 2, size // 2
        ar = np.arange(n_clusters)
        out = np.empty((n_clusters, values.shape[1]))
        for d in range(values.shape[1]):
            pad = np.full((n_clusters, m), np.inf)
            pad[c_s, slot] = values[o, d]
            pad.sort(axis=1)
            out[:, d] = 0.5 * (pad[ar, lo] + pad[ar, hi])
        return out
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    lo = start + (size - 1) // 2
    hi = start + size // 2
    out = np.empty((n_clusters, values.shape[1]))
    for d in range(values.shape[1]):
        o = np.lexsort((values[:, d], cluster))
        v = values[o, d]
        out[:, d] = 0.5 * (v[lo] + v[hi])
    return out


def _vote(
    cluster: np.ndarray,
    label_code: np.ndarray,
    n_clusters: int,
    n_labels: int,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the label code with the largest (weighted) count (ties: lowest code) and
    its share of the cluster's weight."""
    w = np.ones(cluster.size) if weights is None else weights
    c = np.bincount(
        cluster * n_labels + label_code, weights=w, minlength=n_clusters * n_labels
    ).reshape(n_clusters, n_labels)
    best = c.argmax(axis=1)
    tot = c.sum(axis=1)
    share = np.where(tot > 0, c[np.arange(n_clusters), best] / np.where(tot > 0, tot, 1), 0.0)
    return best, share


def _label_codes(labels: Any) -> tuple[np.ndarray, list[Any]]:
    """Label values (a sequence; None/NaN = no label, kept as ``None``) -> codes ordered by
    ``str`` of the label (None sorts first), so ties in a vote go to the smallest label text,
    independent of input order."""
    arr = np.empty(len(labels), dtype=object)
    arr[:] = list(labels) if not isinstance(labels, np.ndarray) else labels
    codes, uniq = pd.factorize(arr, sort=False)
    names: list[Any] = list(uniq)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(None)
    rank = sorted(
        range(len(names)),
        key=lambda i: (names[i] is not None, str(names[i]), type(names[i]).__name__),
    )
    remap = np.empty(len(names), dtype=np.int64)
    remap[rank] = np.arange(len(names))
    return remap[codes].astype(np.int64), [names[i] for i in rank]


# ---- per task -----------------------------------------------------------------------------------


def box_agreement(votes: Sequence[Any], iou: float = 0.5) -> dict[str, float]:
    """Agreement between one task's annotators (module docstring): ``{"f1": mean pairwise F1
    at IoU >= iou with equal labels, "mean_iou": mean IoU of the matched pairs}``."""
    xywh, ann, labels = _parse_votes(votes)
    return _agreement(xywh, ann, labels, len(votes), iou)


def _agreement(
    xywh: np.ndarray, ann: np.ndarray, labels: list[Any], n_ann: int, iou: float
) -> dict[str, float]:
    if n_ann < 2:
        return {"f1": 1.0, "mean_iou": 1.0}
    if xywh.shape[0] == 0:
        return {"f1": 1.0, "mean_iou": 1.0}
    codes, _ = _label_codes(labels)
    per = [np.flatnonzero(ann == i) for i in range(n_ann)]
    f1s: list[float] = []
    ious: list[np.ndarray] = []
    for i in range(n_ann):
        for j in range(i + 1, n_ann):
            a, b = per[i], per[j]
            f, _, v = box_f1(xywh[a], xywh[b], iou, codes[a], codes[b])
            f1s.append(f)
            ious.append(v)
    allv = np.concatenate(ious) if ious else np.zeros(0)
    return {"f1": float(np.mean(f1s)), "mean_iou": float(allv.mean()) if allv.size else 0.0}


def merge_task(
    votes: Sequence[Any], min_support: float = 0.5, iou: float = 0.5
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The platform's per-task consensus of annotators' box lists (module docstring).

    ``votes``: one list of box dicts per annotator (an empty list = "nothing to box", counted
    in the support denominator). Boxes of all labels are clustered together (at most one box
    per annotator per cluster, seed IoU :math:`\\ge` ``iou``); a cluster is kept when the share
    of annotators in it is :math:`\\ge` ``min_support``; its box is the median of the members'
    edges and its label the most common member label (ties: smallest label text).

    Returns ``(boxes, agreement)``: boxes as dicts ``x, y, width, height`` (float), ``label``,
    ``support`` (share of annotators, in (0, 1]), sorted by decreasing support then ``y``, ``x``;
    ``agreement`` = :func:`box_agreement` (pairwise F1 at IoU 0.5 and mean matched IoU).
    Deterministic: independent of the order of annotators and of boxes within a list."""
    for name, v in (("min_support", min_support), ("iou", iou)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValidationError(f"{name} must be a number in [0, 1], got {v!r}", param=name)
    xywh, ann, labels = _parse_votes(votes)
    n_ann = len(votes)
    agreement = _agreement(xywh, ann, labels, n_ann, 0.5)
    if xywh.shape[0] == 0:
        return [], agreement
    edges = _edges(xywh)
    # annotators renumbered by their sorted boxes, so their order in ``votes`` cannot matter
    keys = [
        sorted((*xywh[r].tolist(), str(labels[r])) for r in np.flatnonzero(ann == i).tolist())
        for i in range(n_ann)
    ]
    rank = np.empty(n_ann, dtype=np.int64)
    rank[sorted(range(n_ann), key=lambda i: keys[i])] = np.arange(n_ann)
    codes, names = _label_codes(labels)
    cl = cluster_boxes(np.zeros(len(ann), dtype=np.int64), rank[ann], edges, iou, codes)
    k = int(cl.max()) + 1
    size = np.bincount(cl, minlength=k)
    support = size / n_ann
    med = group_median(edges, cl, k)
    lab, _ = _vote(cl, codes, k, len(names))
    keep = np.flatnonzero(support >= min_support - 1e-12)
    out = [
        {
            "x": float(med[c, 0]),
            "y": float(med[c, 1]),
            "width": float(med[c, 2] - med[c, 0]),
            "height": float(med[c, 3] - med[c, 1]),
            "label": names[lab[c]],
            "support": float(support[c]),
        }
        for c in keep.tolist()
    ]
    out.sort(key=lambda d: (-d["support"], d["y"], d["x"], d["width"], d["height"]))
    return out, agreement
