"""The SQLite runtime's query file: every query it names exists and parses."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from aiobamboo_sqlite import _store
from aiobamboo_sqlite._migrate import migrations

SOURCE = Path(_store.__file__).read_text()


def test_every_query_the_store_names_exists() -> None:
    named = set(re.findall(r'Q\["(\w+)"\]', SOURCE)) | set(re.findall(r'_write\("(\w+)"', SOURCE))
    named |= set(re.findall(r'_(?:all|one)\("(\w+)"', SOURCE))
    named |= set(re.findall(r'_bulk\(\s*conn,\s*"(\w+)"', SOURCE))
    assert named, "the pattern found no query names"
    missing = sorted(n for n in named if n not in _store.Q)
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(_store.Q))
def test_each_query_compiles_against_the_schema(name: str) -> None:
    conn = sqlite3.connect(":memory:")
    for _, sql in migrations():
        conn.executescript(sql)
    # EXPLAIN compiles without running; the parameter count must match the text.
    params = _store.Q[name].count("?")
    conn.execute("EXPLAIN " + _store.Q[name], (None,) * params)
