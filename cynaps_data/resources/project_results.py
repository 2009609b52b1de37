"""A project's results: :class:`ProjectResults`, the export methods of
:class:`~cynaps_data.resources.project.Project` (``export``, ``to_pandas``, ``to_arrow``,
``to_parquet``, ``to_dataset``). Contracts of the frames in :mod:`cynaps_data.io.export`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import urllib3

from ..errors import APIConnectionError, ValidationError

if TYPE_CHECKING:
    from .._http import Transport


class ProjectResults:
    """Downloads of a project's results (mixed into :class:`Project`, which sets ``id``,
    ``annotation_type``, ``labels`` and ``_transport``)."""

    id: str
    annotation_type: str
    labels: list
    _transport: Transport

    EXPORT_FORMATS = (
        "json",
        "jsonl",
        "csv",
        "parquet",
        "dataframe",
        "datasets",
        "label_studio",
        "arrow",
    )

    def export(self, format: str = "json", path: str | None = None, **options: Any) -> Any:
        """Download results in ``format`` (docs/exports.md).

        ``"json"``: the seed's list of records (``r["annotations"][0]["result"]["value"]`` is the
        final label). ``"jsonl"``/``"csv"``/``"parquet"``: written to ``path`` when given (the
        path is returned), else returned as text/bytes. ``"dataframe"``: :meth:`to_pandas`;
        ``"datasets"``: :meth:`to_dataset`; ``"arrow"``: :meth:`to_arrow`; ``"label_studio"``:
        Label Studio's JSON export shape (list of tasks with their annotations). ``options`` go
        to the typed exports (``form``, ``method``, ``since``...).

        Downloading releases the escrowed annotation credits to the annotators (once).
        """
        from ..io import export as io_export

        if format not in self.EXPORT_FORMATS:
            raise ValidationError(
                f"Unknown export format {format!r}; supported: {', '.join(self.EXPORT_FORMATS)}",
                param="format",
            )
        if format in ("json", "jsonl", "label_studio"):
            if options:
                raise ValidationError(
                    f"format {format!r} takes no options, got {sorted(options)}",
                    param=sorted(options)[0],
                )
            records = self._transport.request(
                "GET",
                f"/v1/projects/{self.id}/export",
                params={"format": "json"},
                timeout=max(self._transport.timeout, 300),
            )
            if format == "json":
                return records
            if format == "jsonl":
                return io_export.to_jsonl(records, path)
            from ..io import label_studio

            return label_studio.from_records(records, self._body)
        if format == "arrow":
            return self.to_arrow(**options)
        if format == "datasets":
            return self.to_dataset(**options)
        frame = self.to_pandas(**options)
        if format == "dataframe":
            return frame
        if format == "csv":
            return io_export.to_csv(frame, path)
        if path is not None:
            return io_export.write_parquet(frame, path)
        return io_export.parquet_bytes(frame)

    def _export_response(self, form: str, since: Any) -> Any:
        """The streamed ``GET /export?format=arrow`` response (read it inside ``with``)."""
        params: dict[str, Any] = {"format": "arrow", "form": form}
        if since is not None:
            params["since"] = _since_seconds(since)
        return self._transport.request(
            "GET",
            f"/v1/projects/{self.id}/export",
            params=params,
            timeout=max(self._transport.timeout, 600),
            raw=True,
            stream=True,
        )

    def _arrow(self, form: str, since: Any, python_columns: dict | None = None) -> Any:
        from ..io.ipc import read_ipc

        response = self._export_response(form, since)
        with response:  # read while the platform is still building the next chunks
            response.raw.decode_content = True  # (should a proxy compress it)
            try:
                return read_ipc(response.raw, python_columns=python_columns)
            except APIConnectionError:
                raise
            except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:  # cut mid-stream
                raise APIConnectionError(
                    f"The export stream broke off: {exc}; download it again."
                ) from exc

    def _fetch_asset(self, sha256: str) -> bytes:
        response = self._transport.request(
            "GET", f"/v1/projects/{self.id}/assets/{sha256}", raw=True
        )
        return response.content

    def to_arrow(self, form: str = "wide", *, since: Any = None, fetch_images: bool = True) -> Any:
        """The results as a ``pyarrow.Table`` (wide: data columns restored + consensus
        metadata; long: one row per judgement). Contracts in :mod:`cynaps_data.io.export`."""
        from ..io import export as io_export

        io_export.reject_unknown(form, ("wide", "long"), "form")
        table = self._arrow(form, since)
        if form == "long":
            return table
        return io_export.wide_table(table, fetch_asset=self._fetch_asset if fetch_images else None)

    def to_pandas(
        self,
        form: str = "wide",
        method: Any = None,
        *,
        since: Any = None,
        fetch_images: bool = True,
        **method_params: Any,
    ) -> Any:
        """The results as a typed DataFrame (contracts in :mod:`cynaps_data.io.export`).

        ``form="wide"``: one row per task, index ``task``; the task's columns with their
        uploaded dtypes, ``label`` (categorical over the project's labels) and the consensus
        metadata. ``form="long"``: one row per judgement (``task, worker, label, role,
        created_at, duration``), as crowd-kit and :mod:`cynaps_data.consensus` take it.
        ``method="dawid_skene"`` (any :mod:`cynaps_data.consensus` method) re-aggregates the
        judgements here and adds ``<method>_label``, ``<method>_confidence`` and
        ``<method>_proba.<label>`` (soft labels: one float64 column per label; as a matrix:
        :func:`cynaps_data.io.soft_labels`) beside the platform's label. ``since``: only what
        changed after a cursor (``frame.attrs["cynaps"]["cursor"]``) or timestamp; combine with
        :func:`cynaps_data.io.export.incremental`.
        """
        from ..io import export as io_export

        io_export.reject_unknown(form, ("wide", "long"), "form")
        if form == "long":
            if method is not None:
                raise ValidationError("method= applies to the wide form", param="method")
            return io_export.long_frame(self._arrow("long", since))
        if method is not None:  # a typo fails before anything is downloaded
            info = {"annotation_type": self.annotation_type, "labels": self.labels}
            io_export.check_method(info, method, **method_params)
        ready: dict = {}  # list columns made into Python lists during the download
        table = io_export.wide_table(
            self._arrow("wide", since, ready),
            fetch_asset=self._fetch_asset if fetch_images else None,
        )
        frame = io_export.wide_frame(table, ready)
        if method is not None:
            long = io_export.long_frame(self._arrow("long", None))
            long = long[long["task"].isin(frame.index)]
            frame = io_export.add_reaggregation(frame, long, method, **method_params)
        return frame

    def to_parquet(self, path: str, **options: Any) -> Any:
        """Write the wide typed export to Parquet (label set, annotation type and quality
        settings in the schema metadata); read it back with ``pandas.read_parquet`` or
        :func:`cynaps_data.io.export.read_parquet`. Returns the path.

        A ``path`` without a ``.parquet`` suffix (or ``partitioned=True``) writes a partitioned
        dataset directory, streamed (:mod:`cynaps_data.io.partitioned`: ``form``, ``since``,
        ``max_rows_per_file``, ``row_group_size``, ``compression``, ``overwrite``)."""
        from ..io import export as io_export
        from ..io import partitioned

        if partitioned.is_dataset_path(path, options.pop("partitioned", None)):
            return self._write_dataset(path, **options)

        parquet_options = {
            k: options.pop(k) for k in ("compression", "row_group_size") if k in options
        }
        return io_export.write_parquet(self.to_pandas(**options), path, **parquet_options)

    def _write_dataset(
        self,
        path: str,
        form: str = "wide",
        *,
        since: Any = None,
        fetch_images: bool = True,
        **options: Any,
    ) -> Any:
        """``to_parquet`` into a dataset directory, written while the export streams in."""
        from ..io import export as io_export
        from ..io import partitioned

        io_export.reject_unknown(form, ("wide", "long"), "form")
        response = self._export_response(form, since)
        fetch = self._fetch_asset if fetch_images else None
        with response:
            response.raw.decode_content = True
            try:
                return partitioned.write_export(
                    response.raw, path, form=form, fetch_asset=fetch, **options
                )
            except APIConnectionError:
                raise
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                raise APIConnectionError(
                    f"The export stream broke off: {exc}; download it again."
                ) from exc

    def to_dataset(self, *, since: Any = None, fetch_images: bool = True) -> Any:
        """The wide export as a ``datasets.Dataset``: ``label`` is a ``ClassLabel`` with the
        project's names (``-1`` while not final), consensus columns are features, data columns
        keep their source features (``Image`` where images were uploaded)."""
        from ..io import export as io_export

        table = self.to_arrow("wide", since=since, fetch_images=fetch_images)
        return io_export.to_dataset(table)  # data features from the project's source schema

    # -- quality ---------------------------------------------------------------------------


def _since_seconds(since: Any) -> float:
    """A cursor (float seconds), a datetime/Timestamp or an ISO string as epoch seconds."""
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    import pandas as pd

    try:
        stamp = pd.Timestamp(since)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"since must be a cursor or a timestamp, got {since!r}", param="since"
        ) from exc
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()
