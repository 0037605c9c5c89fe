"""Shared fixtures: a ``runtime`` parametrised over every runtime.

Postgres tests need a reachable server: AIOBAMBOO_PG_DSN, default
postgresql://postgres@127.0.0.1:5432/test. Each test gets its own schema. When
no server answers they are skipped with the reason, unless
AIOBAMBOO_REQUIRE_POSTGRES=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

PG_DSN = os.environ.get("AIOBAMBOO_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("AIOBAMBOO_REQUIRE_POSTGRES") == "1"

_pg_status: str | None = None


async def _probe_postgres() -> str | None:
    """None when reachable, else the reason."""
    global _pg_status
    if _pg_status is not None:
        return _pg_status or None
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN, timeout=3)
        await conn.close()
        _pg_status = ""
    except Exception as exc:
        _pg_status = f"PostgreSQL at {PG_DSN} is not reachable: {type(exc).__name__}: {exc}"
    return _pg_status or None


async def require_postgres() -> None:
    reason = await _probe_postgres()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason + " (AIOBAMBOO_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)


RUNTIME_KINDS = [
    "memory",
    "sqlite-file",
    "sqlite-memory",
    # Every run parks the moment it waits on the outside world, and every callback,
    # operation and timer loads it again: the whole contract, under parking.
    "sqlite-parking",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def _parking_at_once(kwargs: dict[str, Any]) -> dict[str, Any]:
    import attrs

    from aiobamboo.engine import Settings

    settings = kwargs.get("settings") or Settings()
    return {**kwargs, "settings": attrs.evolve(settings, park_after=0.0)}


async def open_runtime(kind: str, tmp_path: Path, **kwargs: Any) -> Any:
    if kind == "sqlite-parking":
        from aiobamboo_sqlite import SQLiteRuntime

        return SQLiteRuntime(tmp_path / "flows.db", **_parking_at_once(kwargs))
    if kind == "memory":
        from aiobamboo.testing import MemoryRuntime

        return MemoryRuntime(**kwargs)
    if kind == "sqlite-file":
        from aiobamboo_sqlite import SQLiteRuntime

        return SQLiteRuntime(tmp_path / "flows.db", **kwargs)
    if kind == "sqlite-memory":
        from aiobamboo_sqlite import SQLiteRuntime

        return SQLiteRuntime(":memory:", **kwargs)
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    schema = "t_" + uuid.uuid4().hex[:12]
    runtime = PostgresRuntime(PG_DSN, schema=schema, **kwargs)
    runtime._test_drop_schema = True  # type: ignore[attr-defined]
    return runtime


async def _drop_schema(runtime: Any) -> None:
    if getattr(runtime, "_test_drop_schema", False):
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{runtime.schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture(params=RUNTIME_KINDS)
def runtime_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def runtime(runtime_kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    rt = await open_runtime(runtime_kind, tmp_path)
    try:
        async with rt:
            yield rt
    finally:
        await _drop_schema(rt)


@pytest.fixture
def runtime_factory(runtime_kind: str, tmp_path: Path) -> Any:
    """For tests that close and reopen a runtime on the same storage."""
    made: list[Any] = []

    class Factory:
        kind = runtime_kind

        async def __call__(self, **kwargs: Any) -> Any:
            if made and runtime_kind == "postgres":
                from aiobamboo_postgres import PostgresRuntime

                first = made[0]
                rt = PostgresRuntime(first.dsn, schema=first.schema, **kwargs)
            elif made and runtime_kind == "memory":
                from aiobamboo.testing import MemoryRuntime

                rt = MemoryRuntime(made[0].storage, **kwargs)
            else:
                rt = await open_runtime(runtime_kind, tmp_path, **kwargs)
            made.append(rt)
            return rt

    yield Factory()
    if made and runtime_kind == "postgres":
        import anyio

        anyio.run(_drop_schema, made[0])
