"""The long tag frame of the sequence aggregators (:mod:`cynaps_data.consensus.spans_seq`),
validated and integer-coded: :func:`encode_sequences` -> :class:`SequenceData`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ValidationError
from .bio import parse_tag
from .spans_seq_hmm import Layout

__all__ = ["COLUMNS", "SequenceData", "encode_sequences"]


COLUMNS = ("task", "worker", "position", "tag")


@dataclass
class SequenceData:
    """Integer-coded crowd tags (see :func:`encode_sequences`).

    Per answer (one row of the input): ``sentence``, ``worker``, ``position``, ``tag`` and
    ``prev`` (the same worker's tag at ``position - 1``, 0 = ``O`` at position 0), ``row`` (flat
    token row in ``layout``). Tag codes: 0 = ``O``, ``1 + 2 l`` = ``B-<label l>``, ``2 + 2 l`` =
    ``I-<label l>``."""

    task_names: pd.Index
    worker_names: pd.Index
    labels: list[str]
    sentence: np.ndarray
    worker: np.ndarray
    position: np.ndarray
    tag: np.ndarray
    prev: np.ndarray
    layout: Layout
    row: np.ndarray
    #: per token row: code of its text (optional ``token`` column), -1 unknown; None: no column
    word: np.ndarray | None = None
    n_words: int = 0
    #: the texts of the word codes (None: no ``token`` column)
    word_names: pd.Index | None = None

    @property
    def tag_names(self) -> list[str]:
        return ["O"] + [f"{p}-{lab}" for lab in self.labels for p in "BI"]

    @property
    def k(self) -> int:
        return 1 + 2 * len(self.labels)

    @property
    def n_workers(self) -> int:
        return len(self.worker_names)

    def counts(self) -> np.ndarray:
        """Votes per token row and tag, ``(N, K)`` float64."""
        n, k = self.layout.n_tokens, self.k
        return np.bincount(self.row * k + self.tag, minlength=n * k).reshape(n, k).astype(float)


def encode_sequences(tags: pd.DataFrame, labels: Sequence[str] | None = None) -> SequenceData:
    """Validate and integer-code the long tag frame (columns ``task``, ``worker``,
    ``position``, ``tag``). Raises :class:`ValidationError` naming the column (``param``) for a
    missing column, a null, a non-integer or negative position, an unknown tag shape, a label
    outside ``labels``, a duplicate (task, worker, position) or a worker who did not tag every
    token of a task."""
    if not isinstance(tags, pd.DataFrame):
        raise ValidationError(
            f"tags must be a pandas DataFrame, got {type(tags).__name__}", param="tags"
        )
    for col in COLUMNS:
        if col not in tags.columns:
            raise ValidationError(
                f"tags is missing column {col!r} (needs {', '.join(COLUMNS)})", param=col
            )
        if tags[col].isna().any():
            row = int(np.flatnonzero(tags[col].isna().to_numpy())[0])
            raise ValidationError(f"column {col!r} has a missing value (row {row})", param=col)
    if len(tags) == 0:
        raise ValidationError("tags is empty: no answers", param="tags")
    pos = tags["position"]
    if pos.dtype.kind not in "iu":
        raise ValidationError(
            f"column 'position' must hold integers (got dtype {pos.dtype})", param="position"
        )
    position = pos.to_numpy(dtype=np.int64)
    if position.min() < 0:
        row = int(np.flatnonzero(position < 0)[0])
        raise ValidationError(f"column 'position' is negative (row {row})", param="position")
    # tags: parse each distinct value once
    tag_codes, tag_uniques = pd.factorize(tags["tag"], sort=False)
    parsed = []
    for j, t in enumerate(tag_uniques):
        try:
            parsed.append(parse_tag(t, "column 'tag'"))
        except ValueError as exc:
            row = int(np.flatnonzero(tag_codes == j)[0])
            raise ValidationError(f"{exc} (row {row})", param="tag") from None
    seen = sorted({lab for p, lab in parsed if p != "O"})
    if labels is None:
        label_list = seen
    else:
        label_list = [str(x) for x in labels]
        extra = [lab for lab in seen if lab not in label_list]
        if extra:
            raise ValidationError(
                f"column 'tag' uses label {extra[0]!r} not in labels={label_list}", param="tag"
            )
    lab_idx = {lab: i for i, lab in enumerate(label_list)}
    uniq_code = np.array(
        [0 if p == "O" else 1 + 2 * lab_idx[lab] + (p == "I") for p, lab in parsed],
        dtype=np.int64,
    )
    tag = uniq_code[tag_codes]
    s_codes, task_names = pd.factorize(tags["task"], sort=False)
    w_codes, worker_names = pd.factorize(tags["worker"], sort=False)
    s_codes = s_codes.astype(np.int64)
    w_codes = w_codes.astype(np.int64)
    n_s, n_w = len(task_names), len(worker_names)
    # duplicates and completeness, on (sentence, worker) answer keys
    key = s_codes * n_w + w_codes
    order = np.lexsort((position, key))
    ks, ps = key[order], position[order]
    dup = (ks[1:] == ks[:-1]) & (ps[1:] == ps[:-1])
    if dup.any():
        i = int(order[1:][dup][0])
        raise ValidationError(
            f"duplicate (task, worker, position) = ({task_names[s_codes[i]]!r}, "
            f"{worker_names[w_codes[i]]!r}, {position[i]}) (row {i})",
            param="position",
        )
    lengths = np.zeros(n_s, dtype=np.int64)
    np.maximum.at(lengths, s_codes, position + 1)
    ans_key, ans_n = np.unique(ks, return_counts=True)
    short = ans_n != lengths[ans_key // n_w]
    if short.any():
        kk = int(ans_key[np.flatnonzero(short)[0]])
        s, w = kk // n_w, kk % n_w
        raise ValidationError(
            f"worker {worker_names[w]!r} gave {int(ans_n[short][0])} of {int(lengths[s])} tags "
            f"for task {task_names[s]!r}: every worker tags every token (positions 0..n-1)",
            param="position",
        )
    # previous tag of the same worker (sorted order: consecutive positions of one answer)
    tag_sorted = tag[order]
    prev_sorted = np.zeros_like(tag_sorted)
    prev_sorted[1:] = tag_sorted[:-1]
    prev_sorted[ps == 0] = 0
    prev = np.empty_like(prev_sorted)
    prev[order] = prev_sorted
    layout = Layout.build(lengths)
    rows = layout.rows(s_codes, position)
    word, n_words, word_names = None, 0, None
    if "token" in tags.columns:
        wcodes, wnames = pd.factorize(tags["token"], sort=False)  # null -> -1 (unknown)
        word = np.full(layout.n_tokens, -1, dtype=np.int64)
        word[rows] = wcodes  # one text per token: the last row given wins
        n_words = len(wnames)
        word_names = pd.Index(wnames)
        if n_words == 0:  # every text unknown: no text at all
            word, n_words, word_names = None, 0, None
    return SequenceData(
        task_names=pd.Index(task_names),
        worker_names=pd.Index(worker_names),
        labels=label_list,
        sentence=s_codes,
        worker=w_codes,
        position=position,
        tag=tag,
        prev=prev,
        layout=layout,
        row=rows,
        word=word,
        n_words=n_words,
        word_names=word_names,
    )
