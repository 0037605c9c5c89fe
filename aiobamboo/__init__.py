"""aiobamboo: an asyncio-native re-implementation of bamboo-engine.

Layers, imports pointing down only:

- ``builder``, ``validator``, ``template``: pure; a tree in, a tree or a value out.
- ``component``, ``states``, ``exceptions``, ``codec``: shared vocabulary.
- ``runtime``: the storage Protocol and its attrs records; no SQL, no node kinds.
- ``engine``: the coroutine scheduler; talks to storage only through ``runtime``.
- ``host``: :class:`Engine`, the composition root: a scheduler over a store.
- ``api``: the public coroutines; the only place errors become EngineAPIResult.

Database drivers live in the separate ``aiobamboo_sqlite`` and
``aiobamboo_postgres`` packages (found through entry points); this package
imports none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._gc import tune_gc

__version__ = "0.1.0"

__all__ = ["Engine", "__version__", "tune_gc"]

if TYPE_CHECKING:
    from .host import Engine as Engine


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a pure layer (builder, runtime, ...) does not
    # load the scheduler.
    if name == "Engine":
        from .host import Engine

        return Engine
    raise AttributeError(f"module 'aiobamboo' has no attribute {name!r}")
