"""Imported by benchmark worker processes (``--import benchmarks.worker_components``)."""

from __future__ import annotations

from aiobamboo.component import ComponentLibrary

from .scenarios import library

for _key, _component in list(library.components()):
    ComponentLibrary.default.register(_component)
