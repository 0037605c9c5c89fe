"""The retention checks of aiobamboo.testing can fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiobamboo.testing import check_runtime


async def test_a_store_whose_purge_leaves_rows_fails_the_retention_checks(
    tmp_path: Path,
) -> None:
    from aiobamboo_sqlite import SQLiteRuntime
    from aiobamboo_sqlite import _store as sqlite_store

    class Leaky(SQLiteRuntime):
        def __init__(self, **kw: Any) -> None:
            super().__init__(tmp_path / "leaky.db", **kw)

    tables = sqlite_store._PURGED_BY_ROOT
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite_store, "_PURGED_BY_ROOT", tuple(t for t in tables if t != "events"))
        with pytest.raises(AssertionError, match="its events stayed"):
            await check_runtime(Leaky, roles=["retention"])
    await check_runtime(Leaky, roles=["retention"])


async def test_a_store_that_lists_by_offset_fails_the_retention_checks(tmp_path: Path) -> None:
    from aiobamboo_sqlite import SQLiteRuntime

    class Unpaged(SQLiteRuntime):
        def __init__(self, **kw: Any) -> None:
            super().__init__(tmp_path / "unpaged.db", **kw)
            list_runs = self.store.list_runs

            async def ignore_key(**kwargs: Any) -> Any:
                kwargs["before_key"] = None
                return await list_runs(**kwargs)

            self.store.list_runs = ignore_key  # type: ignore[method-assign]

    with pytest.raises(AssertionError, match="check_retention_lists_runs_by_page"):
        await check_runtime(Unpaged, roles=["retention"])
