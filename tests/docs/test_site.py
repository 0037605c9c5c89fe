"""The documentation site builds with ``mkdocs build --strict``: every page listed, every
link and anchor resolved, the API reference generated from the docstrings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _nav_pages(nav: object) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(item) for item in nav))
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(item) for item in nav.values()))
    return set()


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    reference = (tmp_path / "reference" / "index.html").read_text()
    for name in ("aiobamboo.api.list_pipelines", "aiobamboo.api.EngineAPIResult.unwrap"):
        assert f'id="{name}"' in reference, name


def test_every_page_is_in_the_navigation_and_the_readme() -> None:
    # mkdocs.yml has a !!python/name tag-free layout, so safe_load reads it.
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert _nav_pages(config["nav"]) == pages
    readme = (ROOT / "README.md").read_text()
    missing = [page for page in sorted(pages) if f"docs/{page}" not in readme]
    assert not missing, f"pages the README does not list: {missing}"
