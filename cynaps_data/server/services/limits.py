"""Input limits every later path can honour (issue 12, defect 2).

``MAX_NESTING_DEPTH``: the deepest nesting of arrays and objects accepted in a JSON request body
(the batch, import and every other JSON body) and in each task's ``data``, ``gold`` and
``predictions`` arriving by Arrow. It is far below every serialiser a task meets later:
``orjson.dumps`` (254 levels: the JSON export and the annotator's assignment), Arrow IPC readers
(64 levels of nested types: the Arrow export read by the client) and SQLite's JSON functions
(1,000). A task that is stored can therefore always be exported and handed to an annotator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..problems import Problem

MAX_NESTING_DEPTH = 32
# a JSON string, escapes included (unrolled loop: no per-character alternation)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_SPECIAL = bytes(b for b in range(256) if b not in b'"[]{}')


def nesting_depth(text: bytes, limit: int = MAX_NESTING_DEPTH) -> int:
    """The nesting depth of JSON ``text`` (for invalid JSON: some number; the parser decides).

    Vectorised: everything but quotes and brackets is dropped (``bytes.translate``), strings
    are masked by the parity of the quotes before each bracket, and the depth is the maximum
    running sum of openers minus closers. Text with escaped quotes first has its strings cut
    out by a regular expression (slower, rare).
    """
    import numpy as np

    if b"[" not in text and b"{" not in text:
        return 0
    if b'\\"' in text:  # escaped quotes: cut strings out with the regex
        text = _STRING.sub(b"", text)
    small = np.frombuffer(text.translate(None, _NOT_SPECIAL), np.uint8)
    outside = (np.cumsum(small == 34, dtype=np.int64) & 1) == 0
    step = (((small == 91) | (small == 123)) & outside).astype(np.int32) - (
        ((small == 93) | (small == 125)) & outside
    )
    return int(np.cumsum(step, dtype=np.int64).max(initial=0))


def too_deep(where: str, limit: int = MAX_NESTING_DEPTH) -> Problem:
    return Problem(
        422,
        "nesting_too_deep",
        f"{where}: JSON is nested more than {limit} levels deep; flatten it "
        f"(every export and the annotator page must be able to serialise it).",
        param=where,
    )


def check_body(raw: bytes, where: str = "body") -> None:
    """422 ``nesting_too_deep`` if a JSON body nests deeper than :data:`MAX_NESTING_DEPTH`."""
    if nesting_depth(raw) > MAX_NESTING_DEPTH:
        raise too_deep(where)


def check_texts(texts: Iterable[str | None], field: str) -> None:
    """The same limit for per-task JSON texts (the Arrow upload's ``data``/``gold``/...)."""
    for i, text in enumerate(texts):
        if text is not None and nesting_depth(text.encode()) > MAX_NESTING_DEPTH:
            raise too_deep(f"tasks[{i}].{field}")


def check_arrow_rows(rows: object) -> None:
    """:func:`check_texts` over an Arrow batch's ``data``, ``gold`` and ``predictions`` texts."""
    for field in ("data", "gold", "predictions"):
        texts = getattr(rows, field, None)
        if texts:
            joined = "\n".join(t for t in texts if t is not None).encode()
            if nesting_depth(joined) > MAX_NESTING_DEPTH:  # find the row for the message
                check_texts(texts, field)
