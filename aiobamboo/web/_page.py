"""The live page: HTML with its script, style and layout library inline (no network needed)."""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["list_page", "pipeline_page"]


@functools.cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("page", name).read_text("utf-8")


def _script(source: str) -> str:
    # An inline script ends at the first "</script"; no asset contains one, but be sure.
    return source.replace("</script", "<\\/script")


def _render(title: str, body: str, scripts: list[str]) -> str:
    inline = "".join(f"<script>{_script(_asset(name))}</script>" for name in scripts)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{_asset('style.css')}</style></head>"
        f"<body>{body}{inline}</body></html>"
    )


def list_page() -> str:
    return _render("Pipelines · aiobamboo", _asset("list.html"), ["common.js", "list.js"])


def pipeline_page() -> str:
    return _render(
        "Pipeline · aiobamboo",
        _asset("pipeline.html"),
        ["vendor/dagre.min.js", "common.js", "pipeline.js"],
    )
