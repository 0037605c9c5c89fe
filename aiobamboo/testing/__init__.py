"""Tools for testing runtimes, components and pipelines.

- :func:`check_runtime` -- the conformance checks a runtime passes to prove it
  keeps the contract the engine relies on.
"""

from __future__ import annotations

from ._checks import CHECKS as CHECKS
from ._checks import check_runtime as check_runtime

__all__ = ["CHECKS", "check_runtime"]
