"""A store's queries and migrations are read alike from a folder and from a zip archive."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiobamboo.storage import package_sql_files, read_package_text

FILES = {
    "sql/queries.sql": "-- name: one\nSELECT 'é';\n",
    "sql/migrations/0002_second.sql": "CREATE TABLE b (x);\n",
    "sql/migrations/0001_first.sql": "CREATE TABLE a (x);\n",
    "sql/migrations/README.txt": "not a migration\n",
}


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("store_files_")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def _check(package: str) -> None:
    importlib.import_module(package)
    assert read_package_text(package, "sql/queries.sql") == FILES["sql/queries.sql"]
    assert package_sql_files(package, "sql/migrations") == [
        ("0001_first", "CREATE TABLE a (x);\n"),
        ("0002_second", "CREATE TABLE b (x);\n"),
    ]


def test_a_package_in_a_folder(on_path: Path) -> None:
    root = on_path / "store_files_folder"
    for name, text in {"__init__.py": "", **FILES}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    _check("store_files_folder")


def test_a_package_in_a_zip_archive(on_path: Path) -> None:
    archive = on_path / "stores.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in {"__init__.py": "", **FILES}.items():
            zf.writestr(f"store_files_zipped/{name}", text.encode("utf-8"))
    sys.path.insert(0, str(archive))
    try:
        _check("store_files_zipped")
        assert not Path(sys.modules["store_files_zipped"].__file__ or "").parent.is_dir()
    finally:
        sys.path.remove(str(archive))


def test_the_runtimes_read_their_own_files() -> None:
    from aiobamboo_sqlite._migrate import migrations

    names = [name for name, _ in migrations()]
    assert names == sorted(names)
    assert names[0].startswith("0001_")
    assert all(text.strip() for _, text in migrations())


HEAVY_MODULES = ("importlib.resources", "importlib.metadata", "zipfile", "tempfile", "uuid")


def test_running_pipelines_on_sqlite_imports_no_heavy_modules() -> None:
    """What an embedding process imports stays for its life: every full pass of
    the garbage collector walks it. The engine, its API and the SQLite runtime
    import none of these modules, which serve no pipeline."""
    code = (
        "import sys, aiobamboo, aiobamboo.api, aiobamboo.builder, aiobamboo_sqlite;"
        f"print(sorted(set({HEAVY_MODULES!r}) & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
