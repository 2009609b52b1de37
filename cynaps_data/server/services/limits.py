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


def deeper_than(text: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """``nesting_depth(text) > limit``; without the scan when ``text`` holds at most ``limit``
    ``[`` and ``{`` in all (the depth cannot exceed their count): a small body such as an
    annotator's ``{"label": "a"}`` costs two ``bytes.count`` calls."""
    return text.count(b"[") + text.count(b"{") > limit and nesting_depth(text, limit) > limit


def too_deep(where: str, limit: int = MAX_NESTING_DEPTH) -> Problem:
    return Problem(
        400,
        "nesting_too_deep",
        f"{where}: JSON nesting depth over {limit} levels; flatten it "
        f"(every export and the annotator page must be able to serialise it).",
        param=where,
    )


def check_body(raw: bytes, where: str = "body") -> None:
    """400 ``nesting_too_deep`` (as for JSON too deep to parse at all) if a JSON body nests deeper than :data:`MAX_NESTING_DEPTH`;
    422 ``invalid_value`` naming the field if a string holds a NUL character (PostgreSQL cannot
    store one, so SQLite refuses it too: both backends answer the same)."""
    if deeper_than(raw):
        raise too_deep(where)
    if b"\\u0000" in raw or b"\x00" in raw:
        check_nul(raw, where)


def check_nul(raw: bytes, where: str) -> None:
    """422 naming the first string (or key) with a NUL character in JSON ``raw``, if any."""
    import orjson

    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # the parser's own 400 follows
    found = nul_path(value, where)
    if found is not None:
        raise Problem(
            422,
            "invalid_value",
            f"{found}: text must not contain NUL (\\u0000) characters",
            param=found,
        )


def nul_path(value: object, path: str) -> str | None:
    """Where the first string (or object key) holding a NUL character is, if any."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, sub in item.items():
                if "\x00" in key:
                    return where
                stack.append((sub, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{i}]") for i, sub in enumerate(item))
    return None


def check_texts(texts: Iterable[str | None], field: str) -> None:
    """The same limit for per-task JSON texts (the Arrow upload's ``data``/``gold``/...)."""
    for i, text in enumerate(texts):
        if text is not None and deeper_than(text.encode()):
            raise too_deep(f"tasks[{i}].{field}")
        if text is not None and ("\\u0000" in text or "\x00" in text):
            check_nul(text.encode(), f"tasks[{i}].{field}")


def check_arrow_rows(rows: object) -> None:
    """:func:`check_texts` over an Arrow batch's ``data``, ``gold`` and ``predictions`` texts."""
    for field in ("data", "gold", "predictions"):
        texts = getattr(rows, field, None)
        if texts:
            joined = "\n".join(t for t in texts if t is not None).encode()
            if (
                deeper_than(joined) or b"\\u0000" in joined or b"\x00" in joined
            ):  # find the row for the message
                check_texts(texts, field)
