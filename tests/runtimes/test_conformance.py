"""Both runtimes pass the published conformance checks (aiobamboo.testing)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aiobamboo.testing import CHECKS, ROLE_CHECKS, ROLES, check_runtime
from conftest import PG_DSN, require_postgres


async def test_sqlite_runtime_conforms(tmp_path: Path) -> None:
    from aiobamboo_sqlite import SQLiteRuntime

    await check_runtime(lambda **kw: SQLiteRuntime(tmp_path / "conformance.db", **kw))


async def test_memory_runtime_conforms() -> None:
    from aiobamboo.testing import MemoryRuntime, MemoryStorage

    storage = MemoryStorage()
    await check_runtime(lambda **kw: MemoryRuntime(storage, **kw))


@pytest.mark.postgres
async def test_postgres_runtime_conforms() -> None:
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    schema = "conf_" + uuid.uuid4().hex[:10]
    try:
        await check_runtime(lambda **kw: PostgresRuntime(PG_DSN, schema=schema, **kw))
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_a_broken_runtime_fails_the_checks(tmp_path: Path) -> None:
    """The checks can fail: a runtime that forgets everything on close does not conform."""
    from aiobamboo_sqlite import SQLiteRuntime

    def forgetful(**kw: Any) -> Any:
        return SQLiteRuntime(tmp_path / f"{uuid.uuid4().hex}.db", **kw)

    with pytest.raises(AssertionError, match="check_restart_keeps_callbacks"):
        await check_runtime(forgetful)
    assert len(CHECKS) == 5


async def test_a_runtime_is_checked_one_role_at_a_time(tmp_path: Path) -> None:
    """A store that journals but forgets its claims passes the journal, not coordination."""
    from aiobamboo_sqlite import SQLiteRuntime

    assert ROLES == ("journal", "read model", "coordination", "event log", "retention", "engine")

    class Unclaimable(SQLiteRuntime):
        def __init__(self, **kw: Any) -> None:
            super().__init__(tmp_path / "roles.db", **kw)

            async def claim_nothing(limit: int, root_ids: Any = None) -> list[str]:
                return []

            self.store.claim_runs = claim_nothing  # type: ignore[method-assign]

    await check_runtime(Unclaimable, roles=["journal", "read model"])
    with pytest.raises(AssertionError, match="coordination: check_coordination_claims"):
        await check_runtime(Unclaimable, roles=["coordination"])
    with pytest.raises(ValueError, match="unknown roles"):
        await check_runtime(Unclaimable, roles=["jornal"])
    assert sum(len(checks) for checks in ROLE_CHECKS.values()) == 11
