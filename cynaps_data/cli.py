"""The ``cynaps`` command: ``quickstart``, ``serve``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def _quickstart(args: argparse.Namespace) -> int:
    from .quickstart import run

    run(poll_interval=args.poll_interval)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from . import config
    from .server.db import database_url
    from .server.platform import LocalPlatform
    from .server.settings import Settings

    settings = Settings(database_url=database_url(args.db))
    platform = LocalPlatform(
        settings=settings, host=args.host, port=args.port, workforce=not args.no_workforce
    ).start()
    key = platform.create_customer("Sandbox customer (cynaps serve)")
    path = config.write_config_file({"api_key": key, "base_url": platform.base_url}, args.config)
    print(f"Cynaps platform (sandbox) on {platform.base_url}  database: {settings.database_url}")
    print(f"Customer API key written to {path}; cynaps_data.Client() will use it.")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    platform.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cynaps", description="Cynaps data toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    qs = sub.add_parser("quickstart", help="run the Getting Started guide end to end on a local platform")
    qs.add_argument("--poll-interval", type=float, default=1.0)
    qs.set_defaults(func=_quickstart)
    serve = sub.add_parser("serve", help="run the platform (sandbox) on 127.0.0.1")
    serve.add_argument("--db", default="cynaps.db", help="SQLite file or database URL")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--config", default=None, help="config file to write the key to")
    serve.add_argument("--no-workforce", action="store_true", help="no simulated annotators")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
