"""The ``cynaps`` command: ``quickstart``, ``serve``, ``annotators``, ``keys``, ``upload``, ``export``."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Callable

from .wire import DEFAULT_BATCH_SIZE


def _port(text: str) -> int:
    """``--port``: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: a whole number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: use 1-65535, or 0 for any free one")
    return port


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: a whole number ≥ 1") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid value {number}: must be at least 1")
    return number


def _finite(unit: str, *, zero: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of ``unit``, above 0 (``zero``: or 0)."""

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: a number of {unit}"
            ) from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
            bound = "≥ 0" if zero else "> 0"
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: a number of {unit} {bound}")
        return number

    return parse


_seconds = _finite("seconds", zero=True)  # --poll-interval
_days = _finite("days", zero=False)  # --expires-in-days


def _database(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give a SQLite file path or a postgresql:// URL")
    return text.strip()


def _shown_url(url: str) -> str:
    """A database URL fit to print: the password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url.split("@", 1)[-1] if "@" in url else url


def _database_error(url: str, exc: Exception) -> str:
    reason = getattr(exc, "orig", None) or exc
    text = " ".join(line.strip() for line in str(reason).splitlines() if line.strip())
    return (
        f"cannot open the database {_shown_url(url)}: {text} "
        "(--db takes a SQLite file path or a postgresql:// URL of a running server)"
    )


def _check_port(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or ``None`` (0 is always free)."""
    import socket

    if port == 0:
        try:
            socket.getaddrinfo(host, 0)
        except OSError as exc:
            return f"cannot listen on {host}: {exc.strerror or exc}; check --host"
        return None
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return (
            f"cannot listen on {host}:{port}: {reason} (is another `cynaps serve` running?); "
            "stop it, or pass --port with another port (--port 0 picks a free one)"
        )
    finally:
        probe.close()
    return None


def _quickstart(args: argparse.Namespace) -> int:
    from .quickstart import run

    run(poll_interval=args.poll_interval)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from . import config
    from .server.db import database_url
    from .server.platform import LocalPlatform
    from .server.settings import Settings

    # what can be checked is checked before anything starts: the config file the key goes to
    # (a broken one would otherwise fail after start-up, in a thread with --workers) and the port
    config.read_config_file(_serve_config_target(args), required=False)
    problem = _check_port(args.host, args.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    settings = Settings(
        database_url=database_url(args.db), webhook_allow_loopback=args.allow_loopback_webhooks
    )
    if args.workers > 1:
        try:
            return _serve_workers(args, settings)
        except SQLAlchemyError as exc:
            print(f"error: {_database_error(settings.database_url, exc)}", file=sys.stderr)
            return 1
    try:
        platform = LocalPlatform(
            settings=settings, host=args.host, port=args.port, workforce=not args.no_workforce
        ).start()
    except SQLAlchemyError as exc:
        print(f"error: {_database_error(settings.database_url, exc)}", file=sys.stderr)
        return 1
    key = platform.create_customer("Sandbox customer (cynaps serve)")
    saved = _save_serve_key(args, key, platform.base_url)  # written before the first line
    shown = _shown_url(settings.database_url)
    print(f"Cynaps platform (sandbox) on {platform.base_url}  database: {shown}")
    print(saved)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    platform.stop()
    return 0


def _serve_config_target(args: argparse.Namespace):
    from pathlib import Path

    from . import config

    return Path(args.config).expanduser() if args.config else config.config_path()


def _save_serve_key(args: argparse.Namespace, key: str, base_url: str) -> str:
    """Write the sandbox key to the config file, never replacing another key there.

    A config file that already holds a different ``api_key`` (perhaps an ``sk_live_`` one) is
    kept unless ``--overwrite-config``; the sandbox key then goes to ``serve.json`` beside it
    (0600). Returns the line to print.
    """
    from . import config

    target = _serve_config_target(args)
    existing = config.read_config_file(target, required=False) if target.exists() else {}
    if existing.get("api_key") and not args.overwrite_config:
        aside = target.with_name("serve.json")
        config.write_config_file({"api_key": key, "base_url": base_url}, aside)
        return (
            f"{target} already holds an API key: kept as it is. The sandbox key is in {aside}; "
            f"use cynaps_data.Client.from_config({str(aside)!r}), or restart with "
            "--overwrite-config to replace it."
        )
    path = config.write_config_file({"api_key": key, "base_url": base_url}, target)
    return f"Customer API key written to {path}; cynaps_data.Client() will use it."


def _serve_workers(args: argparse.Namespace, settings) -> int:
    """``cynaps serve --workers N``: N server processes on one database (server/workers.py)."""
    from .server import workers
    from .server.services.accounts import create_account

    def ready(base_url: str, db) -> None:
        _, key = create_account(
            db,
            role="customer",
            name="Sandbox customer (cynaps serve)",
            sandbox=settings.sandbox,
            starting_credits_cents=settings.starting_credits_cents,
        )
        saved = _save_serve_key(args, key, base_url)  # written before the first line
        print(
            f"Cynaps platform (sandbox) on {base_url}  "
            f"database: {_shown_url(settings.database_url)}  workers: {args.workers}",
            flush=True,
        )
        print(saved, flush=True)

    workers.serve(
        settings,
        args.host,
        args.port,
        args.workers,
        workforce=not args.no_workforce,
        on_ready=ready,
    )
    return 0


def _upload(args: argparse.Namespace) -> int:
    from . import Client
    from .errors import CynapsError
    from .io.uploader import IngestError

    def names(text: str | None) -> list[str] | None:
        return [c.strip() for c in text.split(",") if c.strip()] if text else None

    try:
        with Client() as client:
            project = client.projects.get(args.project)
            result = project.upload_file(
                args.file,
                data_columns=names(args.data_columns),
                id_column=args.id_column,
                gold_column=args.gold_column,
                prediction_column=args.prediction_column,
                image_columns=names(args.image_columns),
                batch_size=args.batch_size,
                on_error=args.on_error,
                progress=not args.no_progress,
            )
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(exc.failures.head(20).to_string(index=False), file=sys.stderr)
        return 1
    except CynapsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.task_count} tasks sent to {project.id}: {result.created} created, "
        f"{result.duplicates} already there, {result.failed} rows skipped; "
        f"project has {result.project_task_count} tasks "
        f"({result.seconds:.1f} s, {result.rows_per_second:,.0f} rows/s)"
    )
    if result.failed:
        print(result.failures.head(20).to_string(index=False))
    return 0


#: ``cynaps export`` formats by the output file's extension
EXPORT_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "json"}


def _export(args: argparse.Namespace) -> int:
    """``cynaps export --project ID -o FILE``: the project's results as Parquet, CSV or JSON."""
    import json
    from pathlib import Path

    from . import Client
    from .errors import CynapsError

    out = Path(args.output)
    fmt = args.format or EXPORT_SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        print(
            f"error: cannot tell the format from {out.name!r}; name a .parquet, .csv, .jsonl or "
            ".json file, or pass --format",
            file=sys.stderr,
        )
        return 2
    if fmt not in ("parquet", "csv") and (args.form != "wide" or args.method):
        print(f"error: --form and --method apply to parquet and csv, not {fmt}", file=sys.stderr)
        return 2
    if not out.parent.is_dir():
        print(
            f"error: the directory {str(out.parent)!r} does not exist; create it first",
            file=sys.stderr,
        )
        return 2
    options = {"form": args.form, **({"method": args.method} if args.method else {})}
    try:
        with Client() as client:
            project = client.projects.get(args.project)
            if fmt in ("json", "label_studio"):
                records = project.export(format=fmt)
                out.write_text(json.dumps(records, ensure_ascii=False, default=str) + "\n")
                rows = len(records)
            elif fmt == "jsonl":
                project.export(format="jsonl", path=str(out))
                rows = sum(1 for _ in out.open(encoding="utf-8"))
            else:
                from .io import export as io_export

                frame = project.to_pandas(**options)
                write = io_export.write_parquet if fmt == "parquet" else io_export.to_csv
                write(frame, str(out))
                rows = len(frame)
    except CynapsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{rows} rows of {project.id} written to {out} ({fmt})")
    return 0


def _annotators(args: argparse.Namespace) -> int:
    """``cynaps annotators add|list``: team members of the customer in the config file."""
    import json

    from .client import Client

    client = Client.from_config(args.config) if args.config else Client()
    request = client._transport.request
    base = client.settings.base_url.rstrip("/")
    with client:
        if args.action == "list":
            team = request("GET", "/v1/annotators")["data"]
            pool = request("GET", "/v1/workforce")["data"]
            if args.json:
                print(json.dumps({"team": team, "workforce": pool}, indent=2))
                return 0
            for member in team:
                print(f"{member['id']}  {member['role']:<9}  {member['name']}")
            for member in pool:
                tag = "sandbox workforce" if member["simulated"] else "platform pool"
                print(f"{member['id']}  {member['role']:<9}  {member['name']}  ({tag})")
            return 0
        member = request("POST", "/v1/annotators", json={"name": args.name, "role": args.role})
        invite = request("POST", f"/v1/annotators/{member['id']}/invites")
        link = base + invite["path"]
        if args.json:
            print(json.dumps({**member, "invite_link": link}, indent=2))
            return 0
        page = "/ui/review" if args.role == "expert" else "/ui/"
        print(f"Added {args.role} {args.name!r} ({member['id']}) to your team.")
        print(f"API key (shown once):   {member['api_key']}")
        print(f"Invite link (one use, expires in 7 days): {link}")
        print(f"Workbench: {base}{page} (sign in with the key, or open the invite link)")
    return 0


def _keys(args: argparse.Namespace) -> int:
    """``cynaps keys create|list|revoke``: API keys of the account in the config file."""
    import json
    from dataclasses import asdict
    from datetime import datetime, timezone

    from .client import Client

    def when(t: float | None) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M") if t else "-"

    client = Client.from_config(args.config) if args.config else Client()
    with client:
        if args.action == "create":
            key = client.api_keys.create(args.name, expires_in_days=args.expires_in_days)
            if args.json:
                print(json.dumps(asdict(key), indent=2))
                return 0
            print(f"Created {key.id} ({key.name!r}), expires {when(key.expires_at)} UTC.")
            print(f"Secret (shown once, store it now): {key.secret}")
            return 0
        if args.action == "revoke":
            key = client.api_keys.revoke(args.key_id)
            print(json.dumps(asdict(key), indent=2) if args.json else f"Revoked {key.id}.")
            return 0
        keys = client.api_keys.list()
        if args.json:
            print(json.dumps([asdict(k) for k in keys], indent=2))
            return 0
        print(
            f"{'id':<20}  {'prefix':<14}  {'status':<8}  {'created':<16}  {'last used':<16}  expires  name"
        )
        for k in keys:
            print(
                f"{k.id:<20}  {k.prefix:<14}  {k.status:<8}  {when(k.created_at):<16}  "
                f"{when(k.last_used_at):<16}  {when(k.expires_at)}  {k.name or ''}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cynaps", description="Cynaps data toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    qs = sub.add_parser(
        "quickstart", help="run the Getting Started guide end to end on a local platform"
    )
    qs.add_argument("--poll-interval", type=_seconds, default=1.0, help="seconds between polls")
    qs.set_defaults(func=_quickstart)
    serve = sub.add_parser("serve", help="run the platform (sandbox) on 127.0.0.1")
    serve.add_argument(
        "--db", type=_database, default="cynaps.db", help="SQLite file or database URL"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8765, help="0: any free port")
    serve.add_argument("--config", default=None, help="config file to write the key to")
    serve.add_argument("--no-workforce", action="store_true", help="no simulated annotators")
    serve.add_argument(
        "--overwrite-config",
        action="store_true",
        help="replace an api_key already in the config file (kept by default)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="server processes on one database (rate limits and caches are per process)",
    )
    serve.add_argument(
        "--allow-loopback-webhooks",
        action="store_true",
        help="let webhooks reach 127.0.0.1/::1 (local development; off by default)",
    )
    serve.set_defaults(func=_serve)
    up = sub.add_parser("upload", help="upload a CSV, Parquet or JSONL file as tasks (resumable)")
    up.add_argument("file", help=".csv, .parquet (or a directory of them) or .jsonl")
    up.add_argument("--project", required=True, help="project id (proj_...)")
    up.add_argument("--id-column", default=None, help="stable id column (default: content hash)")
    up.add_argument("--data-columns", default=None, help="comma-separated task data columns")
    up.add_argument("--gold-column", default=None)
    up.add_argument("--prediction-column", default=None)
    up.add_argument(
        "--image-columns", default=None, help="comma-separated columns of image paths/bytes"
    )
    up.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE)
    up.add_argument("--on-error", choices=["raise", "warn", "skip"], default="raise")
    up.add_argument("--no-progress", action="store_true")
    up.set_defaults(func=_upload)
    ex = sub.add_parser("export", help="download a project's results to a file")
    ex.add_argument("--project", required=True, help="project id (proj_...)")
    ex.add_argument(
        "-o", "--output", required=True, help="file to write (.parquet .csv .jsonl .json)"
    )
    ex.add_argument(
        "--format",
        choices=("parquet", "csv", "jsonl", "json", "label_studio"),
        default=None,
        help="default: from the file's extension",
    )
    ex.add_argument("--form", choices=("wide", "long"), default="wide", help="parquet/csv only")
    ex.add_argument("--method", default=None, help="re-aggregate (e.g. dawid_skene); wide only")
    ex.set_defaults(func=_export)

    team = sub.add_parser(
        "annotators", help="add or list your annotators and experts (needs a running platform)"
    )
    team_sub = team.add_subparsers(dest="action", required=True)
    add = team_sub.add_parser(
        "add", help="add a team member; prints its key and a one-time invite link"
    )
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=("annotator", "expert"), default="annotator")
    listing = team_sub.add_parser("list", help="your team, and the sandbox workforce")
    for command in (add, listing):
        command.add_argument("--config", default=None, help="config file with api_key and base_url")
        command.add_argument("--json", action="store_true", help="print JSON")
    team.set_defaults(func=_annotators)

    keys = sub.add_parser("keys", help="create, list or revoke your API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="a new key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--expires-in-days", type=_days, default=None)
    keys_list = keys_sub.add_parser("list", help="your keys (never their secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id (key_...)")
    revoke.add_argument("key_id")
    for command in (create, keys_list, revoke):
        command.add_argument("--config", default=None, help="config file with api_key and base_url")
        command.add_argument("--json", action="store_true", help="print JSON")
    keys.set_defaults(func=_keys)
    args = parser.parse_args(argv)
    from .errors import CynapsError

    try:
        return args.func(args)
    except CynapsError as exc:  # a wrong key, a platform that is down, a bad config file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be written, a port taken meanwhile
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "quickstart":
            print(
                "\ninterrupted: the quickstart's local platform was stopped and its temporary "
                "database removed; run `cynaps quickstart` again to start over",
                file=sys.stderr,
            )
        else:
            print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
