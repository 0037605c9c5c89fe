"""Text that every store writes for a row: a process's lists of ids, an event's time."""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = ["ids_json", "micros", "time_json"]

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


# An event's time is written into JSON text (SQLite: a row's array of
# events; Postgres: the statement's rows). A float's ``repr``, which JSON
# encoders write, looks for the shortest text that reads back as the very
# same float, in arbitrary-precision arithmetic: some 7,000 instructions for
# a time of today. A whole number of microseconds takes 3,000 to round and
# write, and every state change writes an event. Events keep their times to
# the microsecond.


def time_json(t: float) -> str:
    """The JSON number of a time in seconds, rounded to the microsecond.

    It reads back within half a microsecond of ``t``, and as the very float
    that ``json.loads`` and PostgreSQL make of that decimal text. Times that
    are not between one second and 10^12 seconds (none the engine makes) are
    written as ``repr`` writes them.
    """
    if 1.0 <= t < 1e12:
        text = str(round(t * 1_000_000))
        return f"{text[:-6]}.{text[-6:]}"
    return repr(t)


def micros(t: float | None) -> int | float | None:
    """A time in seconds as whole microseconds, for a statement that divides it by a million.

    None stays None. A time that is not finite stays a float that is not
    finite either, which the JSON encoders of the stores refuse like before.
    """
    if t is None:
        return None
    us = t * 1_000_000
    if us - us == 0.0:  # finite: inf - inf and nan - nan are nan
        return round(us)
    return us
