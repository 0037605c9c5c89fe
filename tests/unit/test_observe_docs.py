"""The metric families documented and charted are the ones the observer registers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from aiobamboo.observe.metrics import PrometheusObserver

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _registered() -> set[str]:
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_family_is_documented_and_nothing_else() -> None:
    text = (DOCS / "observability.md").read_text()
    documented = set(re.findall(r"^\| `(aiobamboo_[a-z_]+)` \|", text, re.M))
    assert documented == _registered()


def test_the_dashboard_charts_registered_families_only() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {_family(name) for expr in exprs for name in re.findall(r"aiobamboo_[a-z_]+", expr)}
    registered = _registered()
    assert used <= registered, used - registered
    assert used == registered, f"not on the dashboard: {registered - used}"
