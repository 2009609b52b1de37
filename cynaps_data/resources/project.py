"""The :class:`Project` resource: uploads, deposit, lifecycle, status, waiting and export."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import APITimeoutError, ValidationError
from .models import Deposit, Payment, ProjectStatus, UploadResult

if TYPE_CHECKING:
    from .._http import Transport

WIRE_KEYS = frozenset({"data", "external_id", "gold", "predictions"})
DEFAULT_BATCH_SIZE = 20_000


def to_wire(task: Any, index: int) -> dict:
    """A task as sent: plain dicts (the seed's) become ``{"data": task}``."""
    if not isinstance(task, Mapping):
        raise ValidationError(
            f"tasks[{index}] must be a dict, got {type(task).__name__}", param=f"tasks[{index}]"
        )
    if isinstance(task.get("data"), Mapping) and task.keys() <= WIRE_KEYS:
        return task if isinstance(task, dict) else dict(task)
    return {"data": task}


class Project:
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
        resumes it. Each batch is stored whole or not at all.
        """
        if isinstance(tasks, (Mapping, str, bytes)):
            raise ValidationError("tasks must be a list of dicts, not a single dict or string", param="tasks")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError("batch_size must be a positive integer", param="batch_size")
        from tqdm.auto import tqdm

        total = len(tasks) if hasattr(tasks, "__len__") else None
        bar = tqdm(total=total, unit="task", desc="Uploading", disable=not progress)
        sent = created = duplicates = batches = 0
        project_total = self.task_count
        batch: list[dict] = []
        try:
            for i, task in enumerate(tasks):
                batch.append(to_wire(task, i))
                if len(batch) >= batch_size:
                    result = self._send_batch(batch, source_schema)
                    source_schema = None
                    sent, created, duplicates, batches = sent + len(batch), created + result["created"], duplicates + result["duplicates"], batches + 1
                    project_total = result["project_task_count"]
                    bar.update(len(batch))
                    batch = []
            if batch or batches == 0:
                result = self._send_batch(batch, source_schema)
                sent, created, duplicates, batches = sent + len(batch), created + result["created"], duplicates + result["duplicates"], batches + 1
                project_total = result["project_task_count"]
                bar.update(len(batch))
        finally:
            bar.close()
        self.task_count = project_total
        return UploadResult(sent, created, duplicates, project_total, batches)

    def _send_batch(self, batch: list[dict], source_schema: dict | None) -> dict:
        body: Any = {"tasks": batch}
        if source_schema is not None:
            body["source_schema"] = source_schema
        return self._transport.request("POST", f"/v1/projects/{self.id}/tasks/batch", json=body)

    # -- typed uploads (conversions live in cynaps_data.io.ingest; the HTTP stays here) ------
    def upload_dataframe(self, df: Any, **options: Any) -> Any:
        """Upload a pandas DataFrame, one task per row, with typed columns and column roles.

        Options: ``data_columns`` (default: all columns without another role), ``id_column``
        (stable id; without it a content hash), ``gold_column``, ``prediction_column``,
        ``image_columns``, ``batch_size``, ``on_error="raise"|"warn"|"skip"``, ``progress``.
        Every row is checked before anything is sent; re-running an interrupted upload
        creates no duplicates. Returns an :class:`~cynaps_data.io.ingest.IngestResult`.
        See docs/preparing-data.md.
        """
        from ..io import ingest

        columns = list(df.columns) if hasattr(df, "columns") else None
        return self._ingest(lambda cols: ingest.from_dataframe(df, cols), columns, **options)

    def upload_dataset(self, ds: Any, **options: Any) -> Any:
        """Upload a ``datasets.Dataset`` or ``IterableDataset`` (same options as
        :meth:`upload_dataframe`); ``Image`` columns are uploaded as assets, ``ClassLabel`` gold
        and prediction columns are sent as label names."""
        from ..io import ingest

        return self._ingest(lambda cols: ingest.from_dataset(ds, cols), None, **options)

    def upload_parquet(self, path: Any, **options: Any) -> Any:
        """Stream a Parquet file (or a directory of them) in record batches (same options as
        :meth:`upload_dataframe`); memory stays bounded by a few batches."""
        from ..io import ingest

        return self._ingest(lambda cols: ingest.from_parquet(path, cols), None, **options)

    def _ingest(self, make_source: Any, columns: list | None, **options: Any) -> Any:
        from ..io import ingest

        roles = ("data_columns", "id_column", "gold_column", "prediction_column")
        wanted = None
        if options.get("data_columns") is not None:
            wanted = list(options["data_columns"]) + [options[r] for r in roles[1:] if options.get(r)]
        source = make_source(wanted if wanted is not None else columns)
        self.refresh()
        path = f"/v1/projects/{self.id}"

        def send_batch(body: bytes) -> dict:
            return self._transport.request(
                "POST", f"{path}/tasks/batch", content=body, content_type="application/json",
                timeout=max(self._transport.timeout, 300),
            )

        def put_asset(sha256: str, data: bytes, content_type: str) -> None:
            self._transport.request(
                "POST", f"{path}/assets", content=data, content_type=content_type,
                headers={"X-Content-SHA256": sha256},
            )

        result = ingest.upload(
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
        response = self._transport.request("GET", f"/v1/projects/{self.id}/assets/{sha256}", raw=True)
        return response.content

    # -- money -----------------------------------------------------------------------------
    def calculate_deposit(self) -> Deposit:
        """Quote the refundable security deposit for the uploaded tasks (price table in docs)."""
        body = self._transport.request("POST", f"/v1/projects/{self.id}/deposit/quote")
        self.state = "pending_deposit"
        return Deposit(body["amount"], body["currency"], body["amount_cents"], body.get("breakdown", {}))

    def pay_deposit(self, payment_method: str = "credits") -> Payment:
        """Pay the deposit: ``"credits"`` from the balance, or a (sandbox-simulated) method."""
        body = self._transport.request(
            "POST", f"/v1/projects/{self.id}/deposit/pay", json={"payment_method": payment_method}
        )
        return Payment(body["amount"], body["currency"], body["payment_method"], body["status"], body["livemode"], body.get("payment_id"))

    # -- lifecycle -------------------------------------------------------------------------
    def _action(self, name: str) -> ProjectStatus:
        status = ProjectStatus.from_api(self._transport.request("POST", f"/v1/projects/{self.id}/{name}"))
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
        status = ProjectStatus.from_api(self._transport.request("GET", f"/v1/projects/{self.id}/status"))
        self.state = status.state
        return status

    def wait(self, *, poll_interval: float = 1.0, timeout: float | None = None, progress: bool = True) -> ProjectStatus:
        """Poll until the project is completed (or cancelled), with a tqdm bar of tasks done.

        Raises :class:`~cynaps_data.errors.APITimeoutError` after ``timeout`` seconds.
        """
        from tqdm.auto import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.get_status()
        with tqdm(total=status.total, unit="task", desc=f"Annotating {self.id}", disable=not progress) as bar:
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

    # -- results ---------------------------------------------------------------------------
    def export(self, format: str = "json") -> Any:
        """Download results. ``"json"``: the seed's list of records.

        Downloading releases the escrowed annotation credits to the annotators (once).
        """
        if format != "json":
            raise ValidationError(f"Unknown export format {format!r}; supported: 'json'", param="format")
        return self._transport.request("GET", f"/v1/projects/{self.id}/export", params={"format": "json"}, timeout=max(self._transport.timeout, 300))

