"""Tools for testing runtimes, components and pipelines.

- :func:`check_runtime` -- the conformance checks a runtime passes to prove it
  keeps the contract the engine relies on, role by role (:data:`ROLES`).
"""

from __future__ import annotations

from ._checks import CHECKS as CHECKS
from ._checks import ROLES as ROLES
from ._checks import check_runtime as check_runtime
from ._roles import ROLE_CHECKS as ROLE_CHECKS

__all__ = ["CHECKS", "ROLES", "ROLE_CHECKS", "check_runtime"]
