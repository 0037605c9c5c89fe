"""The aiobamboo side of docs/migrating-from-bamboo.md runs as it stands.

Every ``python`` block (the original's are marked ``py``) is run, in order,
in one namespace, in a fresh directory (the guide's runtimes open ``flows.db``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-bamboo.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_has_both_sides() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert len(_blocks()) >= 8
    # The original's code, for comparison, in plain python blocks.
    assert text.count("```python\n") >= 6


def test_the_guides_aiobamboo_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "migration_guide"}
    for number, block in enumerate(_blocks(), 1):
        code = compile(block, f"{GUIDE.name} block {number}", "exec")
        exec(code, namespace)
    assert (tmp_path / "flows.db").exists()
