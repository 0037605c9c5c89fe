"""The import direction of the layers, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "aiobamboo"

# layer -> modules of aiobamboo it must not import
FORBIDDEN = {
    "builder": {"engine", "runtime", "api", "validator", "template", "component"},
    "validator": {"engine", "runtime", "api", "component"},
    "template": {"engine", "runtime", "api", "builder", "validator", "component"},
    "engine": {"api", "host"},
    "observe": {"api", "host"},
    "runtime": {"engine", "api", "builder", "validator", "template", "host"},
}
DRIVERS = {"aiosqlite", "asyncpg", "sqlite3", "aiobamboo_sqlite", "aiobamboo_postgres"}
RUNTIMES = ROOT / "runtimes"
# What a storage module may import from aiobamboo: the protocol, its records,
# the errors and the codec. Only a runtime package's __init__ (the composition
# of a store and an engine) imports aiobamboo.host.
STORAGE_MAY_IMPORT = {"runtime", "exceptions", "codec", "storage"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                # Resolve a relative import to a dotted name inside aiobamboo.
                parts = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                base = ".".join(parts)
                found.add(f"{base}.{module}" if module else base)
                found.update(f"{base}.{a.name}" for a in node.names if not module)
            else:
                found.add(module)
    return found


def _layer_files(layer: str) -> list[Path]:
    path = PACKAGE / layer
    return sorted(path.rglob("*.py")) if path.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    bad = []
    for file in _layer_files(layer):
        for name in _imports(file):
            parts = name.split(".")
            if parts[0] == "aiobamboo" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{file.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_core_imports_no_database_driver_nor_runtime_package() -> None:
    bad = [
        f"{file.relative_to(ROOT)} imports {name}"
        for file in PACKAGE.rglob("*.py")
        for name in _imports(file)
        if name.split(".")[0] in DRIVERS
    ]
    assert not bad, bad


def _runtime_files() -> list[Path]:
    return sorted(RUNTIMES.rglob("*.py"))


def test_there_are_runtime_modules_to_check() -> None:
    assert len(_runtime_files()) >= 6


@pytest.mark.parametrize("file", _runtime_files(), ids=lambda f: str(f.relative_to(RUNTIMES)))
def test_storage_modules_only_store(file: Path) -> None:
    allowed = STORAGE_MAY_IMPORT | ({"host", "component"} if file.name == "__init__.py" else set())
    bad = [
        name
        for name in _imports(file)
        if name.split(".")[0] == "aiobamboo"
        and (len(name.split(".")) < 2 or name.split(".")[1] not in allowed)
    ]
    assert not bad, f"{file.relative_to(ROOT)} imports {bad}"
