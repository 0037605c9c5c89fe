"""Identifier generation: a one-letter prefix and a uuid4 hex string, 33 characters."""

from __future__ import annotations

import os

__all__ = ["unique_id"]


def unique_id(prefix: str) -> str:
    """Return ``prefix`` followed by a fresh uuid4 hex string.

    The original's prefixes are ``p`` (pipeline), ``e`` (element), ``f`` (flow),
    ``v`` (state version) and ``t`` (rollback token).
    """
    if len(prefix) != 1:
        raise ValueError(f"an id prefix is one character, got {prefix!r}")
    # uuid.uuid4().hex, written out: 122 random bits with the version (4) and
    # variant (10) bits set. The uuid module costs a process some 1,800
    # objects for the collector to walk, and each call three times as long.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return prefix + raw.hex()
