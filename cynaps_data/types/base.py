"""The interface every annotation type implements: the seam of the whole system (DESIGN §4).

Nothing outside ``cynaps_data/types/<name>.py`` knows what a type's values look like; the
platform, the exports, the workbench and the sandbox workforce ask the project's type through
the hooks below. A type is one object (usually a class instance in its own module) registered
by name (:func:`cynaps_data.types.register`, or the entry point group ``cynaps_data.types``).

Data contracts shared by every hook:

- **config**: the project's label config as stored in ``projects.labels`` (any JSON value the
  type accepts: a list of class names, a rating scale ``{"min": 1, "max": 5}``, ...), always as
  :meth:`AnnotationType.validate_config` returned it.
- **value**: one judgement's answer as JSON (str, number, bool, list, dict — whatever the type
  defines), always as :meth:`AnnotationType.validate_value` returned it. Values are stored as
  their ``orjson.dumps`` text; two values are the same answer when their texts are equal.
- **votes**: a task's annotator values in the order they were made (expert verdicts apart).

Hooks that build export columns work on Arrow arrays of the values' JSON texts, one per vote
or per task, so that a bulk export never builds a Python object per row unless the type does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import orjson
import pyarrow as pa


def python_texts(values: Any) -> list[Any]:
    """An Arrow (chunked) array or any sequence of values as a Python list."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_pylist() if isinstance(values, pa.Array) else list(values)


def json_values(texts: Any) -> list[Any]:
    """Stored JSON texts (an Arrow array or a sequence) as Python values; ``""`` (no value) and
    null are ``None``."""
    return [orjson.loads(t) if t else None for t in python_texts(texts)]


def method_prefix(method: Any) -> str:
    """The column prefix of a client re-aggregation method: its name, or an aggregator
    object's lower-cased class name (``DawidSkene()`` → ``dawidskene``)."""
    name = method if isinstance(method, str) else type(method).__name__.lower()
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Decision:
    """The platform's consensus decision for one task after a judgement.

    ``status``: pending | disputed | completed. ``needed``: annotator judgements wanted now
    (a type may raise it to ask for one more vote). ``final_label``: the final value (a
    *value*, see above) when completed, else ``None``. ``label_source``: consensus | majority
    (or another word the type documents) when completed. ``agreement``: float in [0, 1], the
    type's agreement among the votes (``None`` when it has no meaning yet).
    """

    status: str
    needed: int
    final_label: Any = None
    label_source: str | None = None
    agreement: float | None = None


class VoteArrays(NamedTuple):
    """The votes of ``n_tasks`` tasks, in task then judgement order, for the bulk exports.

    - ``pos``: int64 numpy array, the task position (0 … n_tasks-1) of each annotator vote;
    - ``values``: Arrow string array, each vote's JSON text (aligned with ``pos``);
    - ``n_votes``: int64 numpy array per task, the number of its annotator votes;
    - ``final``: Arrow string array per task, the final value's JSON text (``""``: none yet);
    - ``gold``: Arrow string array per task, the gold value's JSON text (``""``: none);
    - ``expert``: Arrow string array per task, the expert verdict's JSON text (``""``: none);
    - ``data``: Arrow string array per task, the task data's JSON text, for types whose export
      reads the task (an image's size, a text's spans); ``None`` when the caller has none.
    """

    n_tasks: int
    pos: np.ndarray
    values: pa.Array
    n_votes: np.ndarray
    final: pa.Array
    gold: pa.Array
    expert: pa.Array
    data: pa.Array | None = None


@runtime_checkable
class AnnotationType(Protocol):
    """What an annotation type provides. Attributes first, then hooks by concern."""

    #: registry name, the project's ``annotation_type`` (lower-case word, e.g. "classification")
    name: str
    #: price of one judgement in cents (the published price table, docs/configuration.md)
    price_per_judgement_cents: int
    #: the client-side aggregation methods of ``cynaps_data.consensus`` that apply (names of
    #: ``consensus.METHODS``), and the one used by default
    aggregation_methods: tuple[str, ...]
    default_method: str
    #: the agreement metrics that apply (names of ``consensus.agreement`` functions)
    agreement_metrics: tuple[str, ...]

    # -- config and values ------------------------------------------------------------------
    def validate_config(self, config: Any) -> Any:
        """Check a project's label config; return it normalised or raise ``ValueError`` (its
        message names the offending entry, e.g. ``labels[2]``)."""

    def validate_value(self, value: Any, config: Any, data: Any = None) -> Any:
        """Check one judgement's value (also accepting the type's Label Studio ``value``
        shape); return it normalised (JSON-serialisable) or raise ``ValueError``.

        ``data``: the task's data (the uploaded ``data`` object, a dict) when the caller has
        it — the platform always passes it for judgements, gold, predictions and imports — so
        that a type whose values point into the task (span offsets into a text field, boxes
        inside an image, the candidates of a pair) checks them against it; ``None`` when only
        the value's own shape can be checked."""

    def to_label_studio(self, value: Any, config: Any) -> dict:
        """Label Studio's result region for ``value``: ``{"type": ..., "value": {...}}``
        (``from_name``/``to_name`` are added by the caller), or a list of regions for a value
        that is several (spans: one ``labels`` region each)."""

    def from_label_studio(self, region: dict, config: Any) -> Any:
        """The value of one Label Studio result region of this type (not yet validated), or
        raise ``ValueError`` when the region is not of this type."""

    # (whole results, several regions per value: the optional ``label_studio_result`` and
    # ``from_label_studio_result`` hooks below)

    # -- platform consensus -----------------------------------------------------------------
    def decide(self, votes: list[Any], quality: dict, needed: int, config: Any = None) -> Decision:
        """The consensus decision for one task from its annotator ``votes`` (values, in order)
        under the project's validated ``quality_settings`` and ``needed`` judgements, with the
        project's label ``config`` (the platform always passes it: type parameters such as a
        rating's tolerance live there)."""

    def summarize(self, votes: list[Any], config: Any | None) -> dict[str, Any]:
        """The task's vote summary beyond agreement and counts, as JSON: keys and values the
        type documents (classification: ``{"vote_distribution": {label: share}}``). Kept in the
        JSON export's ``consensus`` object; shown to experts in review with ``config=None``
        (then only what was voted, not the whole value space of the config)."""

    # optional: ``adaptive_classes(config) -> list`` opts the type in to adaptive overlap
    # (``quality_settings.mode = "adaptive"``, docs/configuration.md): the finite answer space
    # as values :meth:`validate_value` returns, in a fixed order (classification: the labels).
    # The platform's online skill model (``cynaps_data.consensus.online``) then keeps a
    # confusion matrix over these classes per annotator and stops a task once its posterior
    # confidence reaches the target. A type without it (or whose answers are not among the
    # classes) cannot run adaptive projects: creating one is a 422 naming
    # ``quality_settings.mode``; such types keep the fixed policy of :meth:`decide`.

    # -- export -----------------------------------------------------------------------------
    def wide_columns(self, votes: VoteArrays, config: Any) -> dict[str, pa.Array]:
        """The type's columns of the wide (one row per task) export, each ``n_tasks`` long.

        Must hold ``gold``, ``label``, ``expert_label`` (the values in the type's Arrow type,
        null where none), ``agreement`` and ``confidence`` (float64, null where none); may add
        more (e.g. ``vote_distribution``), placed after ``n_annotations`` in their order.
        """

    def long_label(self, values: pa.Array, config: Any) -> pa.Array:
        """The ``label`` column of the long (one row per judgement) export from the values'
        JSON texts (same length; the type's Arrow type)."""

    def aggregate(self, votes: Any, method: Any, config: Any, **params: Any) -> Any:
        """Client-side re-aggregation for ``project.to_pandas(method=...)``.

        ``votes``: a pandas DataFrame of the long export's annotator rows (columns ``task``
        int64, ``worker`` str, ``label`` as :meth:`long_label` gives it); may be empty.
        ``method``: a name of :attr:`aggregation_methods` (``"auto"``: the default) or an
        aggregator object the type accepts. Returns a DataFrame indexed by ``task`` (only
        tasks with votes need a row) with the columns to add, each named ``<prefix>_<what>``
        where ``<prefix>`` is :func:`cynaps_data.io.export.method_name` of ``method`` (e.g.
        ``<prefix>_label``, ``<prefix>_confidence``, ``<prefix>_proba.<class>``), every column
        of a dtype Parquet, feather and CSV can hold (no nested ``pd.ArrowDtype``:
        pandas-dev/pandas#53011). An unknown method or parameter is a ``ValidationError``
        naming it, also when ``votes`` is empty (the client checks before downloading).
        A type whose ``aggregate`` declares a ``tasks`` parameter also gets the wide frame
        (index task id, the tasks' data columns), e.g. to read the texts it labels."""

    def features(self, config: Any) -> dict[str, Any]:
        """``datasets`` features of the value columns (``label``, ``gold``, ``expert_label``),
        e.g. ``ClassLabel(names=...)``; imports ``datasets`` inside."""

    # optional: ``validate_data(data: dict, config) -> None``: the upload check of the task
    # fields the type reads (a ``ValueError`` naming the field refuses the upload, 422
    # ``tasks[i].data``), so no task enters the queue that no annotator could answer.

    # optional: ``valid_values(values: pa.Array, config) -> np.ndarray | None``: a vectorised
    # check of a whole column of values (the client's upload of gold labels and predictions),
    # a bool mask where null counts as valid, or ``None`` to have them checked row by row with
    # :meth:`validate_value`.

    # optional: ``label_studio_result(value, config, data) -> list[dict]`` and
    # ``from_label_studio_result(result: list[dict], config, data) -> value``: a type whose one
    # value is several Label Studio regions (boxes, spans) or whose regions need the task
    # (percent coordinates of an image) gives the whole ``result`` list both ways (an empty
    # result included); the Label Studio conversion then uses these instead of
    # ``from_label_studio`` (a ``to_label_studio`` returning a list of regions also works
    # for the export direction when the data is not needed, as spans do).

    # optional: ``to_pandas_columns(frame, config) -> frame`` turns the wide frame's value
    # columns (as pandas read them from :meth:`wide_columns`' Arrow arrays) into the dtypes a
    # user expects (e.g. ``Int64`` for integer values with gaps); absent: left as read.

    # -- workbench --------------------------------------------------------------------------
    def widget(self) -> Traversable:
        """The JavaScript module (an ES module file) the workbench pages load for this type,
        served at ``/ui/widgets/<name>.js``. Contract: it exports
        ``mount(box, task, onReady) -> {value(), key(event)}``: draw the answer controls for
        ``task`` (the assignment view: ``labels`` is the config) into the element ``box``, call
        ``onReady(ready)`` whenever the answer becomes complete (true) or incomplete (false);
        ``value()`` is the answer to send as ``label``; ``key(event)`` handles a keydown (true
        when consumed). It may also export ``summary(box, task)``: draw the review page's vote
        summary (the task's ``summarize`` keys, shown to experts). Only DOM APIs that cannot
        inject markup (no ``innerHTML``)."""

    # -- sandbox workforce ------------------------------------------------------------------
    def pseudo_truth(self, data_json: str, config: Any) -> Any:
        """A deterministic 'true' value for a task without gold (from its data's JSON text)."""

    def simulate(
        self, truth: Any, config: Any, accuracy: float, rng: random.Random, data: Any = None
    ) -> Any:
        """A simulated annotator's answer: ``truth`` kept with probability ``accuracy`` (the
        member's own, so noise differs per annotator), else a plausible wrong value; random
        draws only from ``rng`` (seeded per member and task). ``data``: the task's data (dict),
        which the platform always passes (e.g. the text a span points into)."""
