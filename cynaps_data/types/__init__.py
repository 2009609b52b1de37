"""Annotation-type registry: one module per type.

An annotation type says how its label config is validated, how one judgement is validated and
normalised, what a judgement costs, and which Arrow type its final label has. Adding a type means
adding a module and registering it here.
"""

from __future__ import annotations

from . import classification
from .base import AnnotationType

REGISTRY: dict[str, AnnotationType] = {t.name: t for t in (classification.TYPE,)}


def get_type(name: str) -> AnnotationType:
    """The annotation type called ``name``; ``KeyError`` lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"Unknown annotation_type {name!r}; supported: {', '.join(sorted(REGISTRY))}"
        ) from None


__all__ = ["AnnotationType", "REGISTRY", "get_type"]
