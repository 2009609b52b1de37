"""The :class:`Project` resource: uploads, deposit, lifecycle, status and waiting; its results
(exports, frames, datasets) come from :class:`~cynaps_data.resources.project_results.ProjectResults`."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import APITimeoutError, ValidationError
from ..wire import CONTENT_SHA256_HEADER, DEFAULT_BATCH_SIZE, DEFAULT_IMPORT_BATCH_SIZE, JSON
from .models import Deposit, Payment, ProjectStatus, UploadResult
from .project_results import ProjectResults

if TYPE_CHECKING:
    from .._http import Transport

WIRE_KEYS = frozenset({"data", "external_id", "gold", "predictions"})


def to_wire(task: Any, index: int) -> dict:
    """A task as sent: plain dicts (the seed's) become ``{"data": task}``."""
    if not isinstance(task, Mapping):
        raise ValidationError(
            f"tasks[{index}] must be a dict, got {type(task).__name__}", param=f"tasks[{index}]"
        )
    if isinstance(task.get("data"), Mapping) and task.keys() <= WIRE_KEYS:
        return task if isinstance(task, dict) else dict(task)
    return {"data": task}


def _encoded_batches(
    tasks: Iterable[Any], batch_size: int, source_schema: dict | None
) -> Iterator[tuple[int, bytes]]:
    """``(task_count, JSON body)`` per batch; the source schema rides on the first."""
    batch: list[dict] = []
    first = True
    for i, task in enumerate(tasks):
        batch.append(to_wire(task, i))
        if len(batch) >= batch_size:
            yield len(batch), _body(batch, source_schema if first else None)
            batch, first = [], False
    if batch or first:
        yield len(batch), _body(batch, source_schema if first else None)


def _body(batch: list[dict], source_schema: dict | None) -> bytes:
    body: dict[str, Any] = {"tasks": batch}
    if source_schema is not None:
        body["source_schema"] = source_schema
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _prefetch(items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """Iterate ``items`` with up to ``depth`` of them produced ahead in a worker thread."""
    done = object()
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", done))
        except BaseException as exc:  # re-raised in the consumer
            put(("error", exc))

    worker = threading.Thread(target=produce, name="cynaps-upload-encoder", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join(timeout=5)


class Project(ProjectResults):
    """One annotation project. Attributes mirror the API object (``id``, ``name``, ``state``...)."""

    def __init__(self, transport: Transport, body: dict) -> None:
        self._transport = transport
        self._update(body)

    def _update(self, body: dict) -> None:
        self._body = body
        self.id: str = body["id"]
        self.name: str = body["name"]
        self.annotation_type: str = body["annotation_type"]
        self.labels: list = body["labels"]
        self.instructions: str = body.get("instructions", "")
        self.quality_settings: dict = body.get("quality_settings", {})
        self.state: str = body["state"]
        self.task_count: int = body.get("task_count", 0)
        self.source_schema = body.get("source_schema")

    def __repr__(self) -> str:
        return f"<Project {self.id} {self.name!r} state={self.state} tasks={self.task_count}>"

    def refresh(self) -> Project:
        self._update(self._transport.request("GET", f"/v1/projects/{self.id}"))
        return self

    # -- uploads ---------------------------------------------------------------------------
    def upload_tasks(
        self,
        tasks: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
        source_schema: dict | None = None,
    ) -> UploadResult:
        """Upload tasks in batches through the batch endpoint.

        Each task is a dict of task data (the seed's form) or ``{"data": {...}, "external_id":
        ..., "gold": ..., "predictions": ...}``. Tasks with an ``external_id`` already in the
        project are skipped and counted as ``duplicates``, so re-running an interrupted upload
        resumes it. Each batch is stored whole or not at all. A list is checked whole before
        anything is sent; the next batch is serialised while the previous one is in flight.
        """
        if isinstance(tasks, (Mapping, str, bytes)):
            raise ValidationError(
                "tasks must be a list of dicts, not a single dict or string", param="tasks"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError("batch_size must be a positive integer", param="batch_size")
        from tqdm.auto import tqdm

        if isinstance(tasks, (list, tuple)):  # check it whole before anything is sent
            for i, task in enumerate(tasks):
                if type(task) is not dict and not isinstance(task, Mapping):
                    to_wire(task, i)  # raises, naming the item
        total = len(tasks) if hasattr(tasks, "__len__") else None
        sent = created = duplicates = batches = 0
        project_total = self.task_count
        with tqdm(total=total, unit="task", desc="Uploading", disable=not progress) as bar:
            for count, body in _prefetch(_encoded_batches(tasks, batch_size, source_schema)):
                result = self._transport.request(
                    "POST",
                    f"/v1/projects/{self.id}/tasks/batch",
                    content=body,
                    content_type=JSON,
                )
                sent += count
                created += result["created"]
                duplicates += result["duplicates"]
                batches += 1
                project_total = result["project_task_count"]
                bar.update(count)
        self.task_count = project_total
        return UploadResult(sent, created, duplicates, project_total, batches)

    # -- typed uploads (conversions live in cynaps_data.io; the HTTP stays here) -------------------
    def upload_dataframe(
        self,
        df: Any,
        *,
        data_columns: list[str] | None = None,
        id_column: str | None = None,
        gold_column: str | None = None,
        prediction_column: str | None = None,
        image_columns: list[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "raise",
        progress: bool = True,
        **options: Any,
    ) -> Any:
        """Upload a pandas DataFrame, one task per row, with typed columns and column roles.

        ``data_columns`` (default: all columns without another role) are what annotators see;
        ``id_column`` is a stable id (without it, a content hash); ``gold_column`` holds
        honeypot labels and ``prediction_column`` model pre-annotations (both checked against
        the project's labels); ``image_columns`` are uploaded as assets (found automatically
        for PIL images and image bytes). Every row is checked before anything is sent; bad
        rows raise (``on_error="raise"``), or are skipped with a warning (``"warn"``) or
        silently (``"skip"``). Re-running an interrupted upload creates no duplicates.
        Returns an :class:`~cynaps_data.io.uploader.IngestResult`. See docs/preparing-data.md.
        """
        from ..io import sources

        roles = dict(
            data_columns=data_columns,
            id_column=id_column,
            gold_column=gold_column,
            prediction_column=prediction_column,
            image_columns=image_columns,
            batch_size=batch_size,
            on_error=on_error,
            progress=progress,
        )
        columns = list(df.columns) if hasattr(df, "columns") else None
        from ..io import partitioned  # a Dask DataFrame: partition by partition

        make = partitioned.from_dask if partitioned.is_dask_frame(df) else sources.from_dataframe
        return self._ingest(lambda cols: make(df, cols), columns, **roles, **options)

    def upload_dataset(
        self,
        ds: Any,
        *,
        data_columns: list[str] | None = None,
        id_column: str | None = None,
        gold_column: str | None = None,
        prediction_column: str | None = None,
        image_columns: list[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "raise",
        progress: bool = True,
        **options: Any,
    ) -> Any:
        """Upload a ``datasets.Dataset`` or ``IterableDataset`` (options as in
        :meth:`upload_dataframe`); ``Image`` columns are uploaded as assets, ``ClassLabel`` gold
        and prediction columns are sent as label names, and the Features are kept for export."""
        from ..io import sources

        roles = dict(
            data_columns=data_columns,
            id_column=id_column,
            gold_column=gold_column,
            prediction_column=prediction_column,
            image_columns=image_columns,
            batch_size=batch_size,
            on_error=on_error,
            progress=progress,
        )
        return self._ingest(lambda cols: sources.from_dataset(ds, cols), None, **roles, **options)

    def upload_parquet(
        self,
        path: Any,
        *,
        data_columns: list[str] | None = None,
        id_column: str | None = None,
        gold_column: str | None = None,
        prediction_column: str | None = None,
        image_columns: list[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "raise",
        progress: bool = True,
        **options: Any,
    ) -> Any:
        """Stream a Parquet file (or a directory of them) in record batches (options as in
        :meth:`upload_dataframe`); memory stays bounded by a few batches."""
        from ..io import sources

        roles = dict(
            data_columns=data_columns,
            id_column=id_column,
            gold_column=gold_column,
            prediction_column=prediction_column,
            image_columns=image_columns,
            batch_size=batch_size,
            on_error=on_error,
            progress=progress,
        )
        return self._ingest(lambda cols: sources.from_parquet(path, cols), None, **roles, **options)

    def upload_file(self, path: Any, **options: Any) -> Any:
        """Upload a ``.parquet`` file or directory, ``.csv`` or ``.jsonl`` file (options as in
        :meth:`upload_dataframe`); what ``cynaps upload FILE --project ID`` runs."""
        from ..io import sources

        return self._ingest(lambda cols: sources.from_file(path, cols), None, **options)

    def _ingest(self, make_source: Any, columns: list | None, **options: Any) -> Any:
        from ..io import uploader

        roles = ("data_columns", "id_column", "gold_column", "prediction_column")
        wanted = None
        if options.get("data_columns") is not None:
            named = list(options["data_columns"]) + [
                options[r] for r in roles[1:] if options.get(r)
            ]
            wanted = list(dict.fromkeys(named))  # the id column may be task data too
        source = make_source(wanted if wanted is not None else columns)
        self.refresh()
        path = f"/v1/projects/{self.id}"

        def send_batch(body: bytes, content_type: str) -> dict:
            return self._transport.request(
                "POST",
                f"{path}/tasks/batch",
                content=body,
                content_type=content_type,
                timeout=max(self._transport.timeout, 300),
            )

        def put_asset(sha256: str, data: bytes, content_type: str) -> None:
            self._transport.request(
                "POST",
                f"{path}/assets",
                content=data,
                content_type=content_type,
                headers={CONTENT_SHA256_HEADER: sha256},
            )

        result = uploader.upload(
            source,
            project_id=self.id,
            annotation_type=self.annotation_type,
            labels=self.labels,
            existing_schema=self.source_schema,
            existing_tasks=self.task_count,
            send_batch=send_batch,
            put_asset=put_asset,
            **options,
        )
        self.task_count = result.project_task_count
        return result

    def get_asset(self, sha256: str) -> bytes:
        """The bytes of an image asset of this project (see ``data[...]["asset"]``)."""
        response = self._transport.request(
            "GET", f"/v1/projects/{self.id}/assets/{sha256}", raw=True
        )
        return response.content

    # -- money -----------------------------------------------------------------------------
    def calculate_deposit(self) -> Deposit:
        """Quote the refundable security deposit for the uploaded tasks (price table in docs)."""
        body = self._transport.request("POST", f"/v1/projects/{self.id}/deposit/quote")
        self.state = "pending_deposit"
        return Deposit(
            body["amount"], body["currency"], body["amount_cents"], body.get("breakdown", {})
        )

    def pay_deposit(self, payment_method: str = "credits") -> Payment:
        """Pay the deposit: ``"credits"`` from the balance, or a (sandbox-simulated) method."""
        body = self._transport.request(
            "POST", f"/v1/projects/{self.id}/deposit/pay", json={"payment_method": payment_method}
        )
        return Payment(
            body["amount"],
            body["currency"],
            body["payment_method"],
            body["status"],
            body["livemode"],
            body.get("payment_id"),
        )

    # -- lifecycle -------------------------------------------------------------------------
    def _action(self, name: str) -> ProjectStatus:
        status = ProjectStatus.from_api(
            self._transport.request("POST", f"/v1/projects/{self.id}/{name}")
        )
        self.state = status.state
        return status

    def start(self) -> ProjectStatus:
        return self._action("start")

    def pause(self) -> ProjectStatus:
        return self._action("pause")

    def resume(self) -> ProjectStatus:
        return self._action("resume")

    def cancel(self) -> ProjectStatus:
        return self._action("cancel")

    def get_status(self) -> ProjectStatus:
        status = ProjectStatus.from_api(
            self._transport.request("GET", f"/v1/projects/{self.id}/status")
        )
        self.state = status.state
        return status

    def wait(
        self, *, poll_interval: float = 1.0, timeout: float | None = None, progress: bool = True
    ) -> ProjectStatus:
        """Poll until the project is completed (or cancelled), with a tqdm bar of tasks done.

        Raises :class:`~cynaps_data.errors.APITimeoutError` after ``timeout`` seconds.
        """
        from tqdm.auto import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.get_status()
        with tqdm(
            total=status.total, unit="task", desc=f"Annotating {self.id}", disable=not progress
        ) as bar:
            while True:
                bar.n = status.completed
                bar.set_postfix(state=status.state, disputed=status.disputed)
                bar.refresh()
                if status.is_complete or status.state == "cancelled":
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise APITimeoutError(
                        f"Project {self.id} not complete after {timeout:g} s "
                        f"({status.completed}/{status.total} tasks, state {status.state!r})"
                    )
                time.sleep(poll_interval)
                status = self.get_status()

    def annotator_stats(self, gold: Any = None) -> Any:
        """Per-annotator table from :func:`cynaps_data.consensus.annotator_table` over the
        annotators' judgements, against the platform's final labels (and ``gold``: a Series
        indexed by task, or the uploaded gold labels when ``gold`` is None and some exist)."""
        from ..consensus import annotator_table

        long = self.to_pandas("long")
        votes = long[long["role"] == "annotator"][["task", "worker", "label", "duration"]]
        wide = self.to_pandas(fetch_images=False)
        consensus = wide["label"].dropna().astype(object)
        if gold is None and wide["gold"].notna().any():
            gold = wide["gold"].dropna().astype(object)
        votes = votes.assign(
            label=votes["label"].astype(object), worker=votes["worker"].astype(object)
        )
        table = annotator_table(votes, gold=gold, consensus=consensus, labels=list(self.labels))
        table["median_duration"] = votes.groupby("worker")["duration"].median().reindex(table.index)
        return table

    def agreement(self) -> dict:
        """Inter-annotator agreement of the annotators' judgements: ``fleiss_kappa``,
        ``krippendorff_alpha``, ``percent_agreement`` and ``per_label`` (a DataFrame of per-label
        agreement: votes, share of the label's votes on tasks whose final label it is)."""
        from ..consensus import fleiss_kappa, krippendorff_alpha, percent_agreement
        from ..io.export import per_label_agreement

        long = self.to_pandas("long")
        votes = long[long["role"] == "annotator"]
        votes = votes.assign(
            label=votes["label"].astype(object), worker=votes["worker"].astype(object)
        )
        labels = list(self.labels)
        return {
            "fleiss_kappa": fleiss_kappa(votes, labels=labels),
            "krippendorff_alpha": krippendorff_alpha(votes, labels=labels),
            "percent_agreement": percent_agreement(votes, labels=labels),
            "n_judgements": len(votes),
            "per_label": per_label_agreement(votes, labels),
        }

    # -- curation --------------------------------------------------------------------------
    def request_more_judgements(self, task_ids: Iterable[int], n: int = 1) -> dict:
        """Send tasks back for ``n`` more annotator judgements each (curation): they reopen
        (status pending) and the project becomes active again. The extra judgements are charged
        at finalisation like the rest; the balance must cover them. Returns the server summary."""
        ids = [int(t) for t in task_ids]
        body = self._transport.request(
            "POST", f"/v1/projects/{self.id}/tasks/reopen", json={"task_ids": ids, "n": n}
        )
        self.state = body.get("project_state", self.state)
        return body

    def import_label_studio(
        self, records: Any, *, batch_size: int = DEFAULT_IMPORT_BATCH_SIZE
    ) -> dict:
        """Create tasks *with their judgements* from Label Studio's JSON export (a list of task
        dicts, or a path to the file). Judgements are recorded as imported (not platform work,
        not billed); each task's final label follows the project's consensus policy."""
        from ..io import label_studio

        items = label_studio.to_import_items(label_studio.load(records), self._body)
        return self.import_tasks(items, batch_size=batch_size)

    def import_tasks(
        self, items: list[dict], *, batch_size: int = DEFAULT_IMPORT_BATCH_SIZE
    ) -> dict:
        """Create tasks with judgements: each item ``{"data", "external_id"?, "gold"?,
        "judgements": [{"worker", "label", "role"?, "created_at"?, "duration"?}]}``."""
        totals = {"created": 0, "duplicates": 0, "judgements": 0}
        for start in range(0, max(len(items), 1), batch_size):
            body = self._transport.request(
                "POST",
                f"/v1/projects/{self.id}/import",
                json={"tasks": items[start : start + batch_size]},
                timeout=max(self._transport.timeout, 600),
            )
            for key in totals:
                totals[key] += body[key]
            totals["project_task_count"] = body["project_task_count"]
        self.task_count = totals.get("project_task_count", self.task_count)
        return totals
