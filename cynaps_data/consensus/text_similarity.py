r"""Free-text similarity: normalisation of answers into words and the word edit distance
(the primitives of :mod:`cynaps_data.consensus.text`).

**Normalisation** (:class:`TextNormalizer`, default = the 'words' normalisation of the
CrowdSpeech baseline): lower-case; every character that is not a letter, digit, whitespace or one
of ``keep`` (default the apostrophe) becomes a space (``punctuation="space"``; ``"remove"``
deletes it, ``"keep"`` leaves it); runs of whitespace collapse; the words are the pieces.

**Distance.** :math:`d(a, b)` is the Levenshtein distance between word sequences (unit cost
insert / delete / substitute), computed bit-parallel (Myers 1999, Hyyrö 2003) on Python ints:
:math:`O(\lceil m/w\rceil n)` word operations, no DP table. The similarity is
:math:`s(a, b) = 1 - d(a, b) / \max(|a|, |b|)` (1 for two empty answers), in [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError

__all__ = [
    "DEFAULT_NORMALIZER",
    "TextNormalizer",
    "edit_similarity",
    "pairwise_similarity",
    "word_edit_distance",
]

_PUNCT_MODES = ("space", "remove", "keep")


@dataclass(frozen=True)
class TextNormalizer:
    """Configurable text normalisation; ``normalizer(text)`` -> tuple of words.

    ``lowercase``: fold case (``str.lower``). ``punctuation``: what happens to a character that is
    not a letter, digit, whitespace or in ``keep`` (the underscore counts as punctuation): ``"space"``
    (default: it separates words), ``"remove"`` (deleted: "air-tight" -> "airtight") or
    ``"keep"`` (left in the word). ``keep``: characters always kept (default ``"'"``, so "don't"
    stays one word). Whitespace (spaces, tabs, newlines) always separates words. NaN/None -> ().
    """

    lowercase: bool = True
    punctuation: str = "space"
    keep: str = "'"

    def __post_init__(self) -> None:
        if self.punctuation not in _PUNCT_MODES:
            raise ValidationError(
                f"punctuation must be one of {_PUNCT_MODES}, got {self.punctuation!r}",
                param="punctuation",
            )

    def _pattern(self) -> re.Pattern[str] | None:
        if self.punctuation == "keep":
            return None
        return re.compile(r"[^\w\s" + re.escape(self.keep) + r"]|_" if self.keep else r"[^\w\s]|_")

    def __call__(self, text: Any) -> tuple[str, ...]:
        return self.many([text])[0]

    def many(self, texts: Iterable[Any]) -> list[tuple[str, ...]]:
        """Normalise many texts (one compiled pattern); NaN/None -> ()."""
        pat = self._pattern()
        repl = " " if self.punctuation == "space" else ""
        out = []
        for t in texts:
            if not isinstance(t, str):
                if _missing(t):
                    out.append(())
                    continue
                raise ValidationError(f"text answers must be strings, got {type(t).__name__}")
            if self.lowercase:
                t = t.lower()
            if pat is not None:
                t = pat.sub(repl, t)
            out.append(tuple(t.split()))
        return out


DEFAULT_NORMALIZER = TextNormalizer()


def _missing(t: Any) -> bool:
    """None, NaN (float or numpy) or pandas' NA: the empty answer."""
    return t is None or t is pd.NA or (isinstance(t, (float, np.floating)) and t != t)


def _words(x: str | Sequence[Hashable] | None, normalizer: TextNormalizer) -> Sequence[Hashable]:
    if isinstance(x, str) or _missing(x):
        return normalizer(x)
    return x


def word_edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance between two word sequences (unit costs), bit-parallel.

    Myers/Hyyrö: bit ``i`` of the vertical delta vectors ``pv``/``mv`` says the DP column moves
    up/down between rows ``i`` and ``i+1``; one pass of ~15 integer operations per word of ``b``
    (Python ints are arbitrary width, so ``a`` has no length limit)."""
    m = len(a)
    if m == 0:
        return len(b)
    if len(b) == 0:
        return m
    peq: dict[Hashable, int] = {}
    for i, c in enumerate(a):
        peq[c] = peq.get(c, 0) | (1 << i)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for c in b:
        eq = peq.get(c, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def edit_similarity(
    a: str | Sequence[Hashable] | None,
    b: str | Sequence[Hashable] | None,
    normalizer: TextNormalizer = DEFAULT_NORMALIZER,
) -> float:
    """``1 - d(a, b) / max(|a|, |b|)`` on words (1.0 for two empty answers). Strings (and
    NaN/None) are normalised first; other sequences are taken as word lists."""
    wa, wb = _words(a, normalizer), _words(b, normalizer)
    n = max(len(wa), len(wb))
    return 1.0 if n == 0 else 1.0 - word_edit_distance(wa, wb) / n


def _sim_matrix(words: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Symmetric ``n x n`` similarity matrix (diagonal 1); identical answers computed once."""
    n = len(words)
    s = np.ones((n, n))
    for i in range(n):
        wi = words[i]
        for j in range(i + 1, n):
            wj = words[j]
            if wi == wj:
                continue
            s[i, j] = s[j, i] = 1.0 - word_edit_distance(wi, wj) / max(len(wi), len(wj))
    return s


def pairwise_similarity(
    answers: Sequence[Any], normalizer: TextNormalizer = DEFAULT_NORMALIZER
) -> np.ndarray:
    """``n x n`` matrix of :func:`edit_similarity` between normalised answers (diagonal 1)."""
    return _sim_matrix(normalizer.many(answers))
