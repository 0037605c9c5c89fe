"""aiobamboo: an asyncio-native re-implementation of bamboo-engine.

Layers, imports pointing down only:

- ``builder``, ``validator``, ``template``: pure; a tree in, a tree or a value out.
- ``component``, ``states``, ``exceptions``, ``codec``: shared vocabulary.
- ``runtime``: the storage Protocol and its attrs records; no SQL, no node kinds.
- ``engine``: the coroutine scheduler; talks to storage only through ``runtime``.
- ``api``: the public coroutines; the only place errors become EngineAPIResult.

Database drivers live in the separate ``aiobamboo_sqlite`` and
``aiobamboo_postgres`` packages; this package imports none.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
