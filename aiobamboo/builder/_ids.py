"""Identifier generation: a one-letter prefix and a uuid4 hex string, 33 characters."""

from __future__ import annotations

import uuid

__all__ = ["unique_id"]


def unique_id(prefix: str) -> str:
    """Return ``prefix`` followed by a fresh uuid4 hex string.

    The original's prefixes are ``p`` (pipeline), ``e`` (element), ``f`` (flow),
    ``v`` (state version) and ``t`` (rollback token).
    """
    if len(prefix) != 1:
        raise ValueError(f"an id prefix is one character, got {prefix!r}")
    return prefix + uuid.uuid4().hex
