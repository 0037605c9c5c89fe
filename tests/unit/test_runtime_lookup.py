"""How the core finds a runtime for a URL: entry points, then the built-in packages."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest

from aiobamboo import host
from aiobamboo.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("flows.db", "sqlite"),
        ("/var/lib/flows.db", "sqlite"),
        ("sqlite://flows.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
    ],
)
def test_scheme_of(url: str, scheme: str) -> None:
    assert host.scheme_of(url) == scheme


def _entry_points(*points: metadata.EntryPoint) -> Any:
    def entry_points(group: str) -> list[metadata.EntryPoint]:
        return [p for p in points if p.group == group]

    return entry_points


class Custom(host.Engine):
    @classmethod
    def from_url(cls, url: str, **options: Any) -> Custom:
        raise NotImplementedError


def test_an_entry_point_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    point = metadata.EntryPoint("sqlite", f"{__name__}:Custom", host.ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", _entry_points(point))
    assert host.runtime_class("sqlite") is Custom


@pytest.mark.parametrize(
    ("name", "module"), [("sqlite", "aiobamboo_sqlite"), ("postgresql", "aiobamboo_postgres")]
)
def test_without_entry_points_the_built_in_packages_are_found(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    monkeypatch.setattr(metadata, "entry_points", _entry_points())
    found = host.runtime_class(name)
    assert issubclass(found, host.Engine)
    assert found.__module__ == module


def test_an_unknown_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "entry_points", _entry_points())
    with pytest.raises(ConfigurationError, match="no aiobamboo runtime"):
        host.open_url("mysql://u@h/db")


def test_an_entry_point_that_is_no_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    point = metadata.EntryPoint("sqlite", "os:getcwd", host.ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", _entry_points(point))
    with pytest.raises(ConfigurationError, match="not an aiobamboo Engine"):
        host.runtime_class("sqlite")


def test_the_worker_opens_the_runtime_of_its_url() -> None:
    from aiobamboo.worker import open_runtime

    sqlite = open_runtime("sqlite://flows.db", concurrency=5)
    assert type(sqlite).__name__ == "SQLiteRuntime"
    assert sqlite.worker
    assert sqlite.path == "flows.db"
    postgres = open_runtime("postgres://u@h/db", schema="s", lease_seconds=3.0)
    assert type(postgres).__name__ == "PostgresRuntime"
    assert postgres.schema == "s"
    assert postgres.lease_seconds == 3.0


def test_pyproject_declares_the_built_in_runtimes() -> None:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]
    assert declared[host.ENTRY_POINT_GROUP] == host._BUILT_IN
