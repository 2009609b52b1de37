"""Annotation-type registry: one module per type (DESIGN §4; the protocol is in ``base.py``).

Types of this package are registered here; a type living elsewhere registers itself with
:func:`register` (e.g. in a test, or a plugin's import) or is found through the entry point
group ``cynaps_data.types`` (each entry point loads to an :class:`AnnotationType` object),
read once, the first time a name is not known.
"""

from __future__ import annotations

import threading

from . import boxes, classification, multi_label, pairwise, ranking, rating, spans, text
from .base import AnnotationType, Decision, VoteArrays

ENTRY_POINT_GROUP = "cynaps_data.types"
#: the type of a project that names none (``annotation_type``'s default)
DEFAULT_TYPE = classification.TYPE.name
REGISTRY: dict[str, AnnotationType] = {
    t.name: t
    for t in (
        classification.TYPE,
        multi_label.TYPE,
        rating.TYPE,
        text.TYPE,
        spans.TYPE,
        boxes.TYPE,
        pairwise.TYPE,
        ranking.TYPE,
    )
}
_entry_points_loaded = False
_guard = threading.Lock()

#: the hooks every type must provide (checked by :func:`register`)
REQUIRED = (
    "name",
    "price_per_judgement_cents",
    "aggregation_methods",
    "default_method",
    "agreement_metrics",
    "validate_config",
    "validate_value",
    "to_label_studio",
    "from_label_studio",
    "decide",
    "summarize",
    "wide_columns",
    "long_label",
    "aggregate",
    "features",
    "widget",
    "pseudo_truth",
    "simulate",
)


def register(atype: AnnotationType, *, replace: bool = False) -> AnnotationType:
    """Make ``atype`` known under ``atype.name``; returns it. A name already taken by another
    object is an error unless ``replace``; a missing hook is an error naming it."""
    missing = [hook for hook in REQUIRED if not hasattr(atype, hook)]
    if missing:
        raise TypeError(f"annotation type {atype!r} lacks {', '.join(missing)}")
    name = atype.name
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"annotation type name must be a lower-case identifier, got {name!r}")
    with _guard:
        known = REGISTRY.get(name)
        if known is not None and known is not atype and not replace:
            raise ValueError(f"annotation type {name!r} is already registered")
        REGISTRY[name] = atype
    return atype


def unregister(name: str) -> None:
    """Forget the type called ``name`` (tests); the package's own types stay."""
    if name == classification.TYPE.name:
        raise ValueError(f"{name!r} is built in")
    with _guard:
        REGISTRY.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        atype = entry.load()
        if atype.name not in REGISTRY:
            register(atype)
    _entry_points_loaded = True


def get_type(name: str) -> AnnotationType:
    """The annotation type called ``name``; ``KeyError`` lists the known ones."""
    found = REGISTRY.get(name)
    if found is not None:
        return found
    _load_entry_points()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"Unknown annotation_type {name!r}; supported: {', '.join(sorted(REGISTRY))}"
        ) from None


__all__ = [
    "AnnotationType",
    "DEFAULT_TYPE",
    "Decision",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "VoteArrays",
    "get_type",
    "register",
    "unregister",
]
