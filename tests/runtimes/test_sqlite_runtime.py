"""The SQLite runtime's hold on its file: one worker per database, and a damaged file.

Run as a script, this module is the child process of the truncation test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.demo import library
from aiobamboo.exceptions import StorageError
from aiobamboo_sqlite import SQLiteRuntime

IN_USE = "is in use by another worker process"

#: Opens a worker on argv[1] (relative to the child's working directory) and
#: prints what happened.
OPEN_CHILD = """
import sys, anyio
from aiobamboo.exceptions import StorageError
from aiobamboo_sqlite import SQLiteRuntime

async def main():
    try:
        async with SQLiteRuntime(sys.argv[1]):
            print("opened")
    except StorageError as exc:
        print("refused:", exc)

anyio.run(main)
"""


def _open_in_child(path: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", OPEN_CHILD, path],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """``real/flows.db``, with ``link.db`` a symlink to it and ``sub/`` a sibling folder."""
    (tmp_path / "real").mkdir()
    (tmp_path / "sub").mkdir()
    path = tmp_path / "real" / "flows.db"
    (tmp_path / "link.db").symlink_to(path)
    return path


# -- one worker per file ---------------------------------------------------------


#: Names of the ``db`` fixture relative to ``<tmp>/sub``: a symlink, the file, a detour.
OTHER_NAMES = ["../link.db", "../real/flows.db", "./../sub/../link.db"]


async def test_second_worker_is_refused_under_any_name_in_process(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(db.parent.parent / "sub")
    async with SQLiteRuntime(db):
        for name in [str(db.parent.parent / "link.db"), *OTHER_NAMES]:
            with pytest.raises(StorageError, match=IN_USE):
                async with SQLiteRuntime(name):
                    pass
        # A client needs no lock.
        async with SQLiteRuntime("../link.db", worker=False):
            pass
    for name in OTHER_NAMES:
        async with SQLiteRuntime(name):
            pass


async def test_second_worker_is_refused_under_any_name_from_another_process(
    db: Path,
) -> None:
    sub = db.parent.parent / "sub"
    async with SQLiteRuntime(db):
        for name in OTHER_NAMES:
            answer = _open_in_child(name, sub)
            assert answer.startswith("refused:"), (name, answer)
            assert IN_USE in answer, (name, answer)
    for name in OTHER_NAMES:
        assert _open_in_child(name, sub) == "opened", name


async def test_worker_held_through_a_symlink_keeps_out_the_real_name(db: Path) -> None:
    async with SQLiteRuntime(db.parent.parent / "link.db"):
        with pytest.raises(StorageError, match=IN_USE):
            async with SQLiteRuntime(db):
                pass
        answer = _open_in_child(str(db), db.parent)
        assert answer.startswith("refused:"), answer
        assert IN_USE in answer, answer


async def test_worker_refuses_a_file_with_several_hard_links(db: Path) -> None:
    async with SQLiteRuntime(db):
        pass
    os.link(db, db.parent / "other.db")
    for name in (db, db.parent / "other.db"):
        with pytest.raises(StorageError, match="has 2 hard links"):
            async with SQLiteRuntime(name):
                pass
    (db.parent / "other.db").unlink()
    async with SQLiteRuntime(db):
        pass


# -- a damaged file ----------------------------------------------------------------


async def test_database_file_is_not_memory_mapped(tmp_path: Path) -> None:
    # A mapped page of a file truncated underneath is a SIGBUS, not an error.
    for worker in (True, False):
        async with SQLiteRuntime(tmp_path / "flows.db", worker=worker) as runtime:
            rows = list(await runtime.store.conn.execute_fetchall("PRAGMA mmap_size"))
            assert rows == [(0,)]


@pytest.mark.parametrize("worker", [True, False])
async def test_garbage_header_is_a_storage_error_naming_the_file(
    tmp_path: Path, worker: bool
) -> None:
    path = tmp_path / "flows.db"
    path.write_bytes(b"this is no database " * 500)
    for _ in range(2):  # the failed open released its lock: the second try fails the same way
        with pytest.raises(StorageError, match="is not a valid aiobamboo SQLite database") as e:
            async with SQLiteRuntime(path, worker=worker):
                pass
        assert str(path) in str(e.value)
        assert isinstance(e.value.__cause__, sqlite3.DatabaseError)


@pytest.mark.parametrize("worker", [True, False])
async def test_missing_folder_is_a_storage_error(tmp_path: Path, worker: bool) -> None:
    path = tmp_path / "no such folder" / "flows.db"
    with pytest.raises(StorageError, match="no such folder"):
        async with SQLiteRuntime(path, worker=worker):
            pass


def _tree() -> dict[str, Any]:
    start = EmptyStartEvent()
    start.extend(ServiceActivity(component_code="demo_step")).extend(EmptyEndEvent())
    return build_tree(start)


async def _outcome(call: Any) -> list[str]:
    try:
        result = await call()
    except Exception as exc:
        return [type(exc).__name__, str(exc), type(exc.__cause__).__name__]
    exc = getattr(result, "exc", None)  # the api reports failures in its result
    if exc is None:
        return ["returned", repr(result)]
    return [type(exc).__name__, str(exc), type(exc.__cause__).__name__]


async def _truncation_child(db: str, size: int) -> dict[str, list[str]]:
    """Fill ``db``, have another process truncate it, try each operation of a worker and a client.

    Nothing writes after the checkpoint (every pipeline has finished, a client
    writes nothing on its own), so the rows are in the file alone, and with
    the worker's page cache emptied every read below has to reach the file.
    """
    outcomes: dict[str, list[str]] = {}
    async with SQLiteRuntime(db, components=library) as worker:
        roots = []
        for _ in range(40):
            tree = _tree()
            started = await api.run_pipeline(worker, tree)
            assert started.result, started.message
            roots.append(tree["id"])
        for root in roots:
            assert (await api.wait_pipeline(worker, root, timeout=30)).data == "FINISHED"
        async with SQLiteRuntime(db, worker=False, components=library) as client:
            # The worker's checkpointer may be copying the last commits: the
            # truncating checkpoint is refused (busy) until it is done.
            for _ in range(200):
                truncate_log = "PRAGMA wal_checkpoint(TRUNCATE)"
                done = list(await worker.store.conn.execute_fetchall(truncate_log))
                if done != [(1, -1, -1)]:
                    break
                await anyio.sleep(0.01)
            assert done == [(0, 0, 0)], done
            assert (await anyio.Path(db).stat()).st_size > 16 * max(size, 4096)
            truncate = "import os, sys; os.truncate(sys.argv[1], int(sys.argv[2]))"
            await anyio.run_process([sys.executable, "-c", truncate, db, str(size)])
            await worker.store.conn.execute("PRAGMA shrink_memory")
            outcomes.update(await _probe("worker", worker, roots))
            outcomes.update(await _probe("client", client, roots))
    return outcomes


async def _probe(name: str, runtime: SQLiteRuntime, roots: list[str]) -> dict[str, list[str]]:
    calls = {
        "get_run": lambda: runtime.store.get_run(roots[-1]),
        "get_states_by_root": lambda: runtime.store.get_states_by_root(roots[0]),
        "api.run_pipeline": lambda: api.run_pipeline(runtime, _tree()),
        "api.get_pipeline_states": lambda: api.get_pipeline_states(runtime, roots[1]),
    }
    return {f"{name} {op}": await _outcome(call) for op, call in calls.items()}


@pytest.mark.parametrize("size", [0, 4096])
def test_file_truncated_by_another_process_gives_storage_errors(tmp_path: Path, size: int) -> None:
    db = tmp_path / "flows.db"
    # A child process: were the file mapped, the truncation would kill it with SIGBUS.
    out = subprocess.run(
        [sys.executable, __file__, str(db), str(size)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"child exited with {out.returncode}:\n{out.stderr[-3000:]}"
    outcomes = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 8
    for name, (kind, message, *cause) in outcomes.items():
        assert kind == "StorageError", (name, kind, message)
        assert str(db) in message, (name, message)
        assert cause == ["DatabaseError"], (name, cause)


if __name__ == "__main__":
    print(json.dumps(anyio.run(_truncation_child, sys.argv[1], int(sys.argv[2]))))
