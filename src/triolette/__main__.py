"""``python -m triolette module:app``: serve an app with hypercorn's trio worker and graceful drain."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence

from triolette import __version__

DESCRIPTION = """\
Serve an ASGI app with hypercorn's trio worker.

On SIGTERM or SIGINT the server stops accepting connections, sets app.draining, lets
the requests in flight finish within --graceful-timeout seconds, cancels the rest, runs
the lifespan shutdown and exits 0. A second SIGINT cancels what is in flight at once.
"""

EPILOG = """\
examples:
  triolette main:app                          serve main.py's app on http://127.0.0.1:8000
                                              (the module, not the file: main:app, not main.py:app)
  triolette main:app --host 0.0.0.0 --port 80 --workers 4
  triolette main:app --reload --log-level debug --access-log

The app must run under trio; errors in APP (no such module or attribute) exit with code 2,
a failed lifespan startup with code 1.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535 (0: any free port), got {text!r}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triolette",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", metavar="APP", help="the app to serve, as module:attribute (e.g. main:app)")
    parser.add_argument("--version", action="version", version=f"triolette {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=_port, default=8000, help="the port to listen on; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=_workers, default=1, metavar="N", help="worker processes (default: %(default)s)"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long requests in flight get to finish at shutdown (default: %(default)g)",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long an idle keep-alive connection stays open (default: %(default)g)",
    )
    parser.add_argument("--root-path", default="", metavar="PATH", help="the path prefix a proxy serves the app under")
    parser.add_argument(
        "--read-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="close a connection that sends nothing for this long while the server waits to read (default: none)",
    )
    parser.add_argument("--certfile", metavar="PATH", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", metavar="PATH", help="the private key of --certfile (PEM)")
    parser.add_argument(
        "--reload", action="store_true", help="restart when a source file under the current directory changes"
    )
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        default="info",
        metavar="LEVEL",
        help="critical, error, warning, info or debug (default: %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log one line per request to stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``triolette`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as 'python -m' does: 'main:app' is found in the current directory

    from triolette._server import AppImportError, StartupFailed, configure_logging, serve

    configure_logging(args.log_level)
    try:
        serve(
            args.app,
            host=args.host,
            port=args.port,
            workers=args.workers,
            graceful_timeout=args.graceful_timeout,
            reload=args.reload,
            log_level=args.log_level,
            access_log=args.access_log,
            keep_alive_timeout=args.keep_alive_timeout or 5.0,
            root_path=args.root_path,
            read_timeout=args.read_timeout or None,
            certfile=args.certfile,
            keyfile=args.keyfile,
        )
    except AppImportError as exc:
        print(f"triolette: error: {exc}", file=sys.stderr)
        return 2
    except StartupFailed as exc:
        if exc.__cause__ is not None:
            logging.getLogger("triolette").error("Application startup failed", exc_info=exc.__cause__)
        print(f"triolette: error: application startup failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"triolette: error: could not listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
