r"""Batched first-order HMM kernels for :mod:`.spans_seq`: forward-backward and Viterbi over many
sentences at once, in a *position-major* layout, numpy only.

Layout. Sentences are ranked by length, longest first (stable). Token ``i`` of the sentence of
rank ``r`` lives at flat row ``offsets[i] + r``; block ``i`` (rows ``offsets[i] ..
offsets[i] + n_at[i]``) holds position ``i`` of the ``n_at[i]`` sentences longer than ``i``, and
those are always ranks ``0 .. n_at[i] - 1``. One recursion step over a block is then a pair of
dense ``(n_at[i], K) @ (K, K)`` products on contiguous slices: the Python loop runs over
positions (the longest sentence's length), never over sentences or tokens.

Forward-backward (scaled). With transition weights :math:`T` (``K x K``, row = previous tag;
the first token is treated as preceded by tag 0 = ``O``) and per-token emission weights
:math:`\phi_i` (any positive scale per row),

.. math:: \hat\alpha_0 \propto T_{0\cdot}\circ\phi_0, \quad
          \hat\alpha_i \propto (\hat\alpha_{i-1} T)\circ\phi_i, \quad
          \hat\beta_{L-1} = 1, \quad \hat\beta_{i-1} \propto T(\phi_i\circ\hat\beta_i),

each row normalised to sum 1; marginals :math:`\gamma_i \propto \hat\alpha_i\circ\hat\beta_i`
and the summed pairwise marginals

.. math:: \Xi = \sum_{s,i} \frac{(\hat\alpha_{i-1}\otimes(\phi_i\circ\hat\beta_i))\circ T}
                              {\hat\alpha_{i-1}^\top T(\phi_i\circ\hat\beta_i)}.

The log normaliser :math:`\log Z = \sum_i \log c_i` (the forward scale factors) is returned too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Layout", "forward_backward", "viterbi"]


@dataclass(frozen=True)
class Layout:
    """Position-major layout of ``S`` sentences of lengths ``lengths`` (all >= 1).

    ``rank[s]``: the sentence's rank (longest first); ``n_at[i]``: sentences longer than ``i``;
    ``offsets[i]``: first row of block ``i`` (``offsets[-1]`` = total tokens)."""

    lengths: np.ndarray
    rank: np.ndarray
    n_at: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, lengths: np.ndarray) -> Layout:
        lengths = np.asarray(lengths, dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        max_len = int(lengths.max()) if lengths.size else 0
        n_le = np.cumsum(np.bincount(lengths, minlength=max_len + 1))[:max_len]
        n_at = lengths.size - n_le  # sentences with length > i
        offsets = np.concatenate([[0], np.cumsum(n_at)]).astype(np.int64)
        return cls(lengths, rank, n_at.astype(np.int64), offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def rows(self, sentence: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Flat row of (sentence code, position) pairs."""
        return self.offsets[position] + self.rank[sentence]

    def coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per flat row: ``(position, rank, sentence)``, int64 arrays of length ``n_tokens``
        (``sentence`` the code, ``rank`` its place in the longest-first order)."""
        position = np.repeat(np.arange(self.n_at.size), self.n_at)
        rank = np.arange(self.n_tokens) - self.offsets[position]
        sentence = np.argsort(-self.lengths, kind="stable")[rank]
        return position, rank, sentence

    def blocks(self) -> list[tuple[int, int]]:
        return [(int(self.offsets[i]), int(self.n_at[i])) for i in range(self.n_at.size)]


def forward_backward(
    layout: Layout, trans: np.ndarray, emit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Marginals ``gamma`` ``(N, K)``, summed pairwise marginals ``xi`` ``(K, K)`` (including
    the virtual ``O`` -> first-token transitions in row 0) and ``log Z`` (up to the emission
    rows' scales). ``trans`` ``(K, K)`` non-negative (zeros = forbidden transitions), ``emit``
    ``(N, K)`` positive emission weights in the layout's row order."""
    n, k = emit.shape
    blocks = layout.blocks()
    alpha = np.empty((n, k))
    log_z = 0.0
    prev = None
    for off, m in blocks:
        cur = alpha[off : off + m]
        if prev is None:
            np.multiply(trans[0], emit[off : off + m], out=cur)
        else:
            np.matmul(prev[:m], trans, out=cur)
            cur *= emit[off : off + m]
        c = cur.sum(axis=1)
        log_z += float(np.log(c).sum())
        cur /= c[:, None]
        prev = cur
    beta = np.empty((n, k))
    xi = np.zeros((k, k))
    nxt_eb = None  # emit * beta of the next block
    for i in range(len(blocks) - 1, -1, -1):
        off, m = blocks[i]
        b = beta[off : off + m]
        if nxt_eb is None:
            b[:] = 1.0
        else:
            mn = nxt_eb.shape[0]
            np.matmul(nxt_eb, trans.T, out=b[:mn])
            b[:mn] /= b[:mn].sum(axis=1, keepdims=True)
            b[mn:] = 1.0
            # pairwise marginals between this block and the next
            a_prev = alpha[off : off + mn]
            z = np.einsum("rb,rb->r", a_prev @ trans, nxt_eb)
            xi += ((a_prev / z[:, None]).T @ nxt_eb) * trans
        nxt_eb = emit[off : off + m] * b
    # virtual start transitions (from O) into the first tokens
    off, m = blocks[0]
    first = nxt_eb
    z0 = first @ trans[0]
    xi[0] += trans[0] * (first / z0[:, None]).sum(axis=0)
    gamma = alpha * beta
    gamma /= gamma.sum(axis=1, keepdims=True)
    return gamma, xi, log_z


def viterbi(layout: Layout, log_trans: np.ndarray, log_emit: np.ndarray) -> np.ndarray:
    """Most probable tag path of every sentence: int64 ``(N,)`` in the layout's row order.
    ``log_trans`` may hold ``-inf`` (forbidden transitions); row 0 also scores the first tag."""
    n, k = log_emit.shape
    blocks = layout.blocks()
    delta = np.empty((n, k))
    back = np.zeros((n, k), dtype=np.int64)
    prev = None
    for off, m in blocks:
        if prev is None:
            delta[off : off + m] = log_trans[0] + log_emit[off : off + m]
        else:
            scores = prev[:m, :, None] + log_trans[None, :, :]  # (m, from, to)
            arg = scores.argmax(axis=1)
            back[off : off + m] = arg
            delta[off : off + m] = (
                np.take_along_axis(scores, arg[:, None, :], axis=1)[:, 0, :]
                + log_emit[off : off + m]
            )
        prev = delta[off : off + m]
    path = np.empty(n, dtype=np.int64)
    nxt = None
    for i in range(len(blocks) - 1, -1, -1):
        off, m = blocks[i]
        cur = path[off : off + m]
        mn = 0
        if nxt is not None:
            noff, mn = blocks[i + 1]
            cur[:mn] = back[noff + np.arange(mn), nxt]
        cur[mn:] = delta[off + mn : off + m].argmax(axis=1)
        nxt = cur
    return path
