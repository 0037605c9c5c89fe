"""``aiobamboo serve``: the HTTP API with uvicorn, as a worker or as a client of the workers."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import anyio

from ..engine import Settings
from ..exceptions import ConfigurationError, StorageError
from ._common import (
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_database_options,
    add_import_option,
    database,
    import_modules,
    tune_gc,
)
from ._observing import add_observing_options, configure_observing

#: The environment variable with the API token when ``--token`` is not given.
TOKEN_ENV = "AIOBAMBOO_TOKEN"


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API (uvicorn)",
        description=(
            "Serve the HTTP API over the database until SIGTERM or SIGINT, running its "
            "pipelines (a worker) or, with --client, leaving them to the workers. It "
            "binds 127.0.0.1 unless --host says otherwise, and binds another address "
            "only with a token. Signed callback URLs are enabled by "
            "$AIOBAMBOO_CALLBACK_SECRET (and $AIOBAMBOO_PUBLIC_URL, the URL the outside "
            "reaches the server at)."
        ),
    )
    add_database_options(serve, json_output=False)
    add_import_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--token",
        default=None,
        help=f"the bearer token mutating requests need (default: ${TOKEN_ENV}; none: open)",
    )
    serve.add_argument(
        "--client",
        action="store_true",
        help="run no pipelines here: worker processes of the same database run them",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help=(
            "web processes (default: %(default)s); on a SQLite file the first to lock it "
            "drives the pipelines and another takes over when it dies"
        ),
    )
    add_observing_options(serve)
    serve.set_defaults(handler=handle_serve)


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """Leaves SIGTERM and SIGINT to the command, which stops it and exits 0 as a worker does."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


def _serve_processes(args: argparse.Namespace, db: str, token: str | None, level: str) -> int:
    """Several uvicorn worker processes; each builds the application from the environment."""
    import uvicorn

    os.environ.update(
        {
            "AIOBAMBOO_DB": db,
            "AIOBAMBOO_SCHEMA": args.schema,
            "AIOBAMBOO_IMPORT": ",".join(args.imports),
            "AIOBAMBOO_CLIENT": "1" if args.client else "",
            TOKEN_ENV: token or "",
        }
    )
    # Blocks this process, which only supervises the workers (restarting a dead one).
    uvicorn.run(
        "aiobamboo.web.serving:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        lifespan="on",
        log_level=level,
        timeout_graceful_shutdown=3,
    )
    return EXIT_OK


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def handle_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..web import CallbackSigner
        from ..web.serving import create_app
    except ImportError as exc:
        raise CliError(
            f"serve needs the web extra (pip install 'aiobamboo[web]'): {exc}", EXIT_USAGE
        ) from exc

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        raise CliError(
            f"refusing to serve on {args.host} without a token: give --token or ${TOKEN_ENV} "
            "(or serve on 127.0.0.1)",
            EXIT_USAGE,
        )
    db = database(args)
    if args.workers < 1:
        raise CliError("--workers must be 1 or more", EXIT_USAGE)
    if args.workers > 1 and args.metrics_port is not None:
        raise CliError(
            "--metrics-port serves the metrics of one process: not with --workers", EXIT_USAGE
        )
    observer = configure_observing(args)
    import_modules(args.imports)
    tune_gc()
    log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    if args.workers > 1:
        return _serve_processes(args, db, token, log_level)
    try:
        app = create_app(
            db,
            schema=args.schema,
            client=args.client,
            token=token,
            callback_signer=CallbackSigner.from_env(),
            settings=Settings(observer=observer),
        )
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="on",
        log_level=log_level,
        # Event streams stay open: do not wait for their clients for ever at shutdown.
        timeout_graceful_shutdown=3,
    )
    server = _server_class()(config)
    try:
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        # A second signal stops without waiting for open requests.
                        server.force_exit = server.should_exit
                        server.should_exit = True

            tg.start_soon(stop_on_signal)
            await server.serve()
            tg.cancel_scope.cancel()
    except (StorageError, ConfigurationError) as exc:
        raise CliError(f"{db}: {exc}", EXIT_DATABASE) from exc
    if not server.started:
        # The lifespan failed (the database could not be opened) or the port is taken.
        raise CliError(f"could not serve {db} on {args.host}:{args.port}", EXIT_DATABASE)
    return EXIT_OK
