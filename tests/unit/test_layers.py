"""The import direction of ARCHITECTURE §1, checked on the source."""

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
    "engine": {"api"},
    "runtime": {"engine", "api", "builder", "validator", "template"},
}
DRIVERS = {"aiosqlite", "asyncpg", "sqlite3", "aiobamboo_sqlite", "aiobamboo_postgres"}


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


def test_core_imports_no_database_driver() -> None:
    bad = [
        f"{file.relative_to(ROOT)} imports {name}"
        for file in PACKAGE.rglob("*.py")
        if file.name not in ("worker.py", "demo.py")
        for name in _imports(file)
        if name.split(".")[0] in DRIVERS
    ]
    assert not bad, bad
