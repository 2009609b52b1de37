"""Character spans ⇄ token tags (IOB2), the bridge between the ``spans`` type's character
offsets and token classification (CoNLL files, ``AutoModelForTokenClassification``).

Data contracts: a *span* is ``(start, end, label)`` (character offsets, end exclusive); a
tokenisation is a list of ``(start, end)`` character offsets, in text order, not overlapping;
tags are IOB2 strings (``O``, ``B-PER``, ``I-PER``, ...; the conll2003 convention).

- :func:`spans_to_tags`: a token is inside a span when they share a character; the first
  token of a span is ``B-``, the next ones ``I-``. A token touched by two spans takes the
  first (by start) — the spans of one answer do not overlap unless the project allows it.
- :func:`tags_to_spans`: an entity runs from its ``B-X`` (or an ``I-X`` not continuing an
  ``X``: conlleval's repair) over the following ``I-X``; its span is the first token's start
  to the last token's end.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any

TOKEN = re.compile(r"\S+")
SPACE = re.compile(r"\s")
Offsets = list[tuple[int, int]]


def whitespace_tokenize(text: str) -> Offsets:
    """The offsets of the whitespace-separated tokens of ``text``."""
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


def tokenize(text: str, tokenizer: Any = None) -> tuple[list[str], Offsets]:
    """``(tokens, offsets)`` of ``text`` with ``tokenizer``:

    - ``None``: whitespace;
    - a Hugging Face *fast* tokenizer (anything with ``convert_ids_to_tokens``): called with
      ``return_offsets_mapping=True, add_special_tokens=False``; empty offsets are dropped;
    - any other callable ``tokenizer(text)`` returning ``(start, end)`` pairs,
      ``(token, start, end)`` triples or a mapping with ``offset_mapping``.
    """
    if tokenizer is None:
        offsets = whitespace_tokenize(text)
        return [text[s:e] for s, e in offsets], offsets
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        pairs = [
            (str(p), int(s), int(e))
            for p, (s, e) in zip(pieces, encoded["offset_mapping"], strict=True)
            if e > s
        ]
        return [p for p, _, _ in pairs], [(s, e) for _, s, e in pairs]
    if not callable(tokenizer):
        raise TypeError("tokenizer must be None, a fast tokenizer or a callable giving offsets")
    out = tokenizer(text)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["offset_mapping"]
    tokens: list[str] = []
    offsets: Offsets = []
    for item in out:
        if len(item) == 3:
            token, s, e = item
        else:
            (s, e), token = item, None
        s, e = int(s), int(e)
        if e <= s:
            continue
        tokens.append(str(token) if token is not None else text[s:e])
        offsets.append((s, e))
    return tokens, offsets


def locate_tokens(tokens: Sequence[str], text: str, name: str = "tokens") -> Offsets:
    """The offsets of ``tokens`` found in ``text`` in order (each searched from the end of the
    one before); ``ValueError`` naming the first token not found (``tokens[3]``)."""
    offsets: Offsets = []
    at = 0
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise ValueError(f"{name}[{i}] must be a non-empty string, got {token!r}")
        found = text.find(token, at)
        if found < 0:
            raise ValueError(f"{name}[{i}] {token!r} is not in the text after offset {at}")
        offsets.append((found, found + len(token)))
        at = found + len(token)
    return offsets


def check_tags(
    tags: Sequence[Any], name: str = "tags", labels: Sequence[str] | None = None
) -> None:
    """``ValueError`` naming the first tag that is not ``O``/``B-X``/``I-X`` (``X`` one of
    ``labels`` when given)."""
    known = set(labels) if labels is not None else None
    for i, tag in enumerate(tags):
        ok = isinstance(tag, str) and (tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2))
        if ok and known is not None and tag != "O" and tag[2:] not in known:
            raise ValueError(f"{name}[{i}] {tag!r}: {tag[2:]!r} is not one of the labels")
        if not ok:
            raise ValueError(f"{name}[{i}] must be O, B-<label> or I-<label>, got {tag!r}")


def tags_to_spans(tags: Sequence[str], offsets: Offsets) -> list[tuple[int, int, str]]:
    """Character spans of IOB2 ``tags`` over tokens at ``offsets`` (see the module; the
    entities are :func:`cynaps_data.consensus.bio.entities`')."""
    from .bio import entities

    if len(tags) != len(offsets):
        raise ValueError(f"{len(tags)} tags for {len(offsets)} tokens")
    return [(offsets[a][0], offsets[b - 1][1], label) for a, b, label in entities(list(tags))]


def spans_to_tags(spans: Sequence[Any], offsets: Offsets) -> list[str]:
    """IOB2 tags of the tokens at ``offsets`` for character ``spans`` (see the module)."""
    from .spans import spans_of

    tags = ["O"] * len(offsets)
    starts = [s for s, _ in offsets]
    for start, end, label in sorted(spans_of(spans)):
        first = True
        i = max(0, bisect.bisect_right(starts, start) - 1)
        while i < len(offsets) and offsets[i][0] < end:
            if offsets[i][1] > start:
                if tags[i] != "O":  # taken by an overlapping span (overlaps allowed)
                    if not first:
                        break
                else:
                    tags[i] = ("B-" if first else "I-") + label
                    first = False
            i += 1
    return tags


def iob2_names(labels: Sequence[str]) -> list[str]:
    """The tag names of ``labels`` in the conll2003 order: ``O``, then ``B-X``, ``I-X`` per
    label in the given order."""
    names = ["O"]
    for label in labels:
        names += [f"B-{label}", f"I-{label}"]
    return names


def segment_offsets(
    answers: Sequence[Sequence[tuple[int, int, str]]], text: str | None = None
) -> Offsets:
    """Elementary segments of a task's answers: the pieces between consecutive span boundaries
    (every ``start`` and ``end`` of every answer), so that each answer's spans are runs of whole
    segments. Without ``text`` a tokenisation that needs none (the client-side sequence models
    use it); with the task's ``text`` its whitespace words are cut at those boundaries too and
    the whitespace between them left out, so the segments are words (or pieces of words)."""
    points = {p for spans in answers for s, e, _ in spans for p in (s, e)}
    if text is None:
        ordered = sorted(points)
        return [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b > a]
    words = whitespace_tokenize(text)
    points.update(p for w in words for p in w)
    ordered = sorted(p for p in points if 0 <= p <= len(text))
    return [
        (a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b > a and text[a:b].strip()
    ]


def conll_lines(tokens: Sequence[str], tags: Sequence[str]) -> list[str]:
    """``token TAG`` lines of one sentence (whitespace inside a token becomes ``_``)."""
    return [f"{SPACE.sub('_', t)} {g}" for t, g in zip(tokens, tags, strict=True)]
