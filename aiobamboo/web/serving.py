"""The application ``aiobamboo serve`` runs, also for ``uvicorn --factory``.

::

    AIOBAMBOO_DB=flows.db AIOBAMBOO_IMPORT=flows \\
        uvicorn --factory aiobamboo.web.serving:app_from_env --workers 4

On a SQLite file each process opens a :class:`~aiobamboo.failover.FailoverRuntime`:
the first to lock the file drives the pipelines, the others are its clients
and one of them takes over when it dies. On Postgres every process is a
worker, unless ``AIOBAMBOO_CLIENT=1`` leaves the work to separate workers.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette

from ..component import ComponentLibrary
from ..engine import Settings
from ..failover import FailoverRuntime
from ..host import Engine, open_url, scheme_of
from .asgi import create_asgi_app
from .signing import CallbackSigner

__all__ = ["app_from_env", "create_app", "open_serving_runtime"]


def open_serving_runtime(
    db: str, *, schema: str = "aiobamboo", client: bool = False, settings: Settings | None = None
) -> Engine:
    """The runtime one web process serves: a client, a failover runtime or a worker."""
    library = ComponentLibrary.default
    options: dict[str, Any] = {"components": library, "schema": schema, "settings": settings}
    if client:
        return open_url(db, worker=False, **options)
    if scheme_of(db) == "sqlite" and db.removeprefix("sqlite://") != ":memory:":
        return FailoverRuntime(lambda worker: open_url(db, worker=worker, **options))
    return open_url(db, worker=True, **options)


def import_components(names: Sequence[str]) -> None:
    """Import the modules that define the components, the current directory importable."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        importlib.import_module(name)


def create_app(
    db: str,
    *,
    schema: str = "aiobamboo",
    client: bool = False,
    token: str | None = None,
    callback_signer: CallbackSigner | None = None,
    settings: Settings | None = None,
) -> Starlette:
    """The API and the pages over ``db``, opening and closing the runtime in the lifespan."""
    runtime = open_serving_runtime(db, schema=schema, client=client, settings=settings)
    return create_asgi_app(
        runtime, token=token, callback_signer=callback_signer, manage_runtime=True
    )


def app_from_env() -> Starlette:
    """``create_app`` from AIOBAMBOO_DB, AIOBAMBOO_SCHEMA, AIOBAMBOO_IMPORT (comma-separated),
    AIOBAMBOO_TOKEN, AIOBAMBOO_CLIENT=1 and AIOBAMBOO_CALLBACK_SECRET / AIOBAMBOO_PUBLIC_URL."""
    imports = [m.strip() for m in os.environ.get("AIOBAMBOO_IMPORT", "").split(",") if m.strip()]
    import_components(imports)
    return create_app(
        os.environ.get("AIOBAMBOO_DB", "aiobamboo.db"),
        schema=os.environ.get("AIOBAMBOO_SCHEMA", "aiobamboo"),
        client=os.environ.get("AIOBAMBOO_CLIENT") == "1",
        token=os.environ.get("AIOBAMBOO_TOKEN") or None,
        callback_signer=CallbackSigner.from_env(),
    )
