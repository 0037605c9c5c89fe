"""The value codec: what inputs, outputs and context values may hold, and how they are stored.

Values are JSON types plus ``datetime``, ``date``, ``Decimal`` and ``tuple``, at
any depth up to :data:`MAX_DEPTH`. They are stored as JSON text; the four extra
types, dicts with non-string keys, and dicts that happen to use the tag key are
wrapped in a one-key object ``{"__aiobamboo__": [kind, payload]}``:

- ``datetime``: ISO 8601; a naive datetime stays naive, an aware one keeps its offset;
- ``date``: ISO 8601;
- ``Decimal``: its exact digits as a string;
- ``tuple``: a list of encoded items;
- a dict with non-string keys (int, float, bool, None): a list of ``[key, value]`` pairs.

Anything else (sets, objects, bytes) raises :class:`ValueCodecError` naming the
path of the offending value. The original pickles such values; aiobamboo never does.

What is written must read back, so these are refused too, with the path named:

- a value that contains itself, directly or through other lists, dicts or
  tuples (the same list appearing twice without containing itself is fine; it
  is stored twice and reads back as two equal lists);
- nesting deeper than :data:`MAX_DEPTH` (200) levels of stored JSON, counted
  from the top of what one call stores (the whole outputs dict, the callback
  data, the pipeline tree). Each dict or list is one level; the wrappers make a
  ``datetime``, ``date`` or ``Decimal`` two levels, a tuple three and a dict
  with non-string keys four. JSON decoders recurse per level, and CPython's
  stops at the interpreter's recursion limit (1000 by default, minus the
  caller's stack), so the bound leaves ample room;
- ``nan`` and infinities (JSON has no such numbers);
- ints with more digits than Python converts to text
  (:func:`sys.get_int_max_str_digits`, 4300 by default);
- strings, and dict keys, holding an unpaired surrogate (``"\\ud800"``): they
  are not Unicode text and no runtime can store them as UTF-8.

:func:`loads` never recurses in Python and turns any text it cannot read
(malformed, nested beyond the decoder's reach, a tag with a bad payload) into
:class:`ValueCodecError` rather than ``RecursionError`` or ``TypeError``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .exceptions import ValueCodecError

__all__ = ["MAX_DEPTH", "check", "decode", "dumps", "encode", "loads"]

TAG = "__aiobamboo__"
#: The deepest nesting of stored JSON the codec writes (see the module docstring).
MAX_DEPTH = 200
_SCALARS = (str, int, float, bool, type(None))
#: Below this many bits an int has fewer digits than any limit Python allows
#: setting (640), so its conversion to text cannot fail and is not tried.
_SAFE_INT_BITS = 2000
_INT_BOUND = 1 << _SAFE_INT_BITS
#: Paths longer than this are shortened in messages (a path 200 levels deep).
_PATH_SHOWN = 160


def encode(value: Any, path: str = "value") -> Any:
    """Turn ``value`` into plain JSON data, or raise :class:`ValueCodecError`."""
    return _encode(value, path, 0, {})


def _encode(value: Any, path: str, depth: int, active: dict[int, str]) -> Any:
    """``depth`` counts the stored levels around ``value``; ``active`` maps the ids
    of the containers being encoded (``value``'s ancestors) to their paths.

    Plain loops rather than comprehensions: one Python frame a level, so the
    recursion stays well within the interpreter's limit up to MAX_DEPTH.
    Scalars that need no check are copied inline, without building their path.
    """
    kind = type(value)
    if kind is list or kind is tuple or kind is dict:
        pass
    elif isinstance(value, _SCALARS):
        _check_scalar(value, path)
        return value
    elif isinstance(value, _dt.datetime):
        _check_depth(path, depth + 2)
        return {TAG: ["datetime", value.isoformat()]}
    elif isinstance(value, _dt.date):
        _check_depth(path, depth + 2)
        return {TAG: ["date", value.isoformat()]}
    elif isinstance(value, Decimal):
        _check_depth(path, depth + 2)
        return {TAG: ["decimal", str(value)]}
    elif isinstance(value, list | tuple):
        kind = list if isinstance(value, list) else tuple
    elif isinstance(value, dict):
        kind = dict
    else:
        raise ValueCodecError(
            f"{_short(path)}: values of type {type(value).__name__} cannot be stored "
            "(allowed: JSON types, datetime, date, Decimal, tuple)"
        )
    key_id = id(value)
    if key_id in active:
        raise ValueCodecError(
            f"{_short(path)}: the value contains itself (this is {_short(active[key_id])} "
            "again); a value with a reference cycle cannot be stored"
        )
    # Entries are removed on the way out; after a refusal the whole dict is dropped.
    active[key_id] = path
    bound = _INT_BOUND
    if kind is list or kind is tuple:
        inner = depth + (1 if kind is list else 3)
        _check_depth(path, inner)
        out: list[Any] = []
        for i, v in enumerate(value):
            t = type(v)
            if (
                (t is str and v.isascii())
                or t is bool
                or v is None
                or (t is int and -bound < v < bound)
            ):
                out.append(v)
            else:
                out.append(_encode(v, f"{path}[{i}]", inner, active))
        del active[key_id]
        return out if kind is list else {TAG: ["tuple", out]}
    if TAG not in value and all(type(k) is str for k in value):
        _check_depth(path, depth + 1)
        plain: dict[str, Any] = {}
        for k, v in value.items():
            if not k.isascii():
                _check_str(k, path, k)
            t = type(v)
            if (
                (t is str and v.isascii())
                or t is bool
                or v is None
                or (t is int and -bound < v < bound)
            ):
                plain[k] = v
            else:
                plain[k] = _encode(v, f"{path}.{k}", depth + 1, active)
        del active[key_id]
        return plain
    _check_depth(path, depth + 4)
    items = []
    for k, v in value.items():
        if not isinstance(k, _SCALARS):
            raise ValueCodecError(f"{_short(path)}: dict key {_repr(k)} of type {type(k).__name__}")
        _check_scalar(k, f"{path} key {_repr(k)}")
        items.append([k, _encode(v, f"{path}[{_repr(k)}]", depth + 4, active)])
    del active[key_id]
    return {TAG: ["dict", items]}


def _check_depth(path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueCodecError(
            f"{_short(path)}: nested more than {MAX_DEPTH} levels deep, the most the codec "
            "stores (tuples count three levels, dicts with non-string keys four)"
        )


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, str):
        _check_str(value, path)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueCodecError(f"{_short(path)}: {value!r} is not a finite number")
    elif value.bit_length() > _SAFE_INT_BITS:
        try:
            str(value)
        except ValueError:
            raise ValueCodecError(
                f"{_short(path)}: an int of about {_digits(value)} "
                "digits, more than Python converts to text "
                "(sys.get_int_max_str_digits)"
            ) from None


def _check_str(text: str, path: str, key: str | None = None) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        what = f"dict key {_repr(key)}" if key is not None else "string"
        raise ValueCodecError(
            f"{_short(path)}: {what} holds an unpaired surrogate "
            f"{exc.object[exc.start]!r} at index {exc.start}, which is not Unicode text"
        ) from None


def _repr(key: Any) -> str:
    """A short ``repr`` of a dict key for paths and messages, which must be storable too."""
    if type(key) is int and key.bit_length() > _SAFE_INT_BITS:
        return f"<int of about {_digits(key)} digits>"
    try:
        text = repr(key)
    except Exception:
        return f"<{type(key).__name__}>"
    if not _is_utf8(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 80 else f"{text[:77]}..."


def _digits(value: int) -> int:
    """About how many decimal digits ``value`` has, without converting it."""
    return int(value.bit_length() * math.log10(2)) + 1


def _short(path: str) -> str:
    if len(path) <= _PATH_SHOWN:
        return path
    half = _PATH_SHOWN // 2
    return f"{path[:half]}…{path[-half:]}"


def decode(data: Any) -> Any:
    """Invert :func:`encode`; malformed tagged data raises :class:`ValueCodecError`.

    Iterative, so data nested as deep as a JSON decoder produces never
    exhausts the Python stack.
    """
    if type(data) is not list and type(data) is not dict:
        return data
    holder: list[Any] = [None]
    # (freeze, target, key, source): decode ``source`` into ``target[key]``; with
    # freeze, ``source`` is the finished item list of a tuple. A tuple's freeze is
    # pushed before its items, so it runs once they (and theirs) are all done.
    stack: list[tuple[bool, Any, Any, Any]] = [(False, holder, 0, data)]
    try:
        while stack:
            freeze, target, key, source = stack.pop()
            if freeze:
                target[key] = tuple(source)
            elif type(source) is list:
                target[key] = _fill([None] * len(source), enumerate(source), stack)
            elif type(source) is not dict:
                target[key] = source
            elif len(source) != 1 or source.get(TAG) is None:
                target[key] = _fill({}, source.items(), stack)
            else:
                target[key] = _untag(source[TAG], stack, target, key)
    except ValueCodecError:
        raise
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise ValueCodecError(f"malformed stored value: {type(exc).__name__}: {exc}") from None
    return holder[0]


def _fill(out: Any, pairs: Any, stack: list[tuple[bool, Any, Any, Any]]) -> Any:
    """Copy ``pairs`` into ``out``, leaving containers to the stack (in place, so
    dict keys keep their order)."""
    for k, v in pairs:
        out[k] = v
        if type(v) is list or type(v) is dict:
            stack.append((False, out, k, v))
    return out


def _untag(tagged: Any, stack: list[tuple[bool, Any, Any, Any]], target: Any, key: Any) -> Any:
    kind, payload = tagged
    if kind == "tuple":
        if type(payload) is not list:
            raise ValueCodecError(f"malformed stored tuple: {payload!r:.80}")
        items = [None] * len(payload)
        stack.append((True, target, key, items))
        return _fill(items, enumerate(payload), stack)
    if kind == "dict":
        if type(payload) is not list:
            raise ValueCodecError(f"malformed stored dict: {payload!r:.80}")
        return _fill({}, ((k, v) for k, v in payload), stack)
    if kind == "datetime":
        return _dt.datetime.fromisoformat(payload)
    if kind == "date":
        return _dt.date.fromisoformat(payload)
    if kind == "decimal":
        return Decimal(payload)
    raise ValueCodecError(f"unknown codec tag {kind!r:.80}")


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON as it is (no tags needed): the common case, checked fast.

    False also for anything :func:`encode` would refuse or needs a closer look
    at, which then names the problem. A reference cycle makes a value
    infinitely deep, so the depth bound also ends the walk of a cyclic value.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return kind in _PLAIN_SCALARS or (kind is float and math.isfinite(value))
    if kind is dict and TAG not in value:
        # A flat dict of scalars (a node's inputs or outputs, mostly) is checked
        # without a call; anything else is walked from the start.
        for key, child in value.items():
            if type(key) is not str or type(child) not in _PLAIN_SCALARS:
                break
        else:
            return True
    return _walk(value, 1)


def _walk(item: Any, depth: int) -> bool:
    """:func:`_plain` of a dict or list ``depth`` levels deep in what is stored.

    Recursive rather than driven by a stack of (container, depth) pairs: a
    frame a level costs less than a tuple a container, and C's encoder, which
    writes the value next, recurses a level at a time too, so no value that
    encoder can write is too deep for this walk. Depth first, a cycle reaches
    MAX_DEPTH within as many calls and ends the walk.
    """
    if depth > MAX_DEPTH:
        return False
    depth += 1
    # The dict and list loops stay separate: one pass over items() costs half
    # of checking the keys first and then walking values() (hot path).
    if type(item) is dict:
        if TAG in item:
            return False
        for key, child in item.items():
            if type(key) is not str:
                return False
            kind = type(child)
            if kind in _PLAIN_SCALARS:
                continue
            if kind is dict or kind is list:
                if not _walk(child, depth):
                    return False
            elif kind is not float or not math.isfinite(child):
                return False
    else:
        for child in item:
            kind = type(child)
            if kind in _PLAIN_SCALARS:
                continue
            if kind is dict or kind is list:
                if not _walk(child, depth):
                    return False
            elif kind is not float or not math.isfinite(child):
                return False
    return True


_PLAIN_SCALARS = frozenset((str, int, bool, type(None)))


def _encoder() -> Callable[[Any], str]:
    """JSON text of a value known to hold no reference cycle (a plain value, see
    :func:`_plain`, or what :func:`encode` built), exactly as ``json.dumps(value,
    ensure_ascii=False, separators=(",", ":"))`` writes it.

    It skips the encoder's cycle bookkeeping, and calls the C encoder made once
    here rather than once a call as ``JSONEncoder.encode`` does (half the cost
    of a small value). That encoder's constructor is not a public interface: if
    it is missing or behaves otherwise, ``JSONEncoder.encode`` serves.
    """
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    try:
        chunks = make(
            None, plain.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
        )
        probe = {"a": [1, -2.5, None, True, "é\n", {}], "": [[]]}
        if "".join(chunks(probe, 0)) != plain.encode(probe) or "".join(chunks("x", 0)) != '"x"':
            return plain.encode
    except Exception:
        return plain.encode
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


_ENCODE = _encoder()


def dumps(value: Any, path: str = "value") -> str:
    """Encode to JSON text, or raise :class:`ValueCodecError` naming the path."""
    if _plain(value):
        try:
            text = _ENCODE(value)
        except ValueError:
            # An int too long to convert: encode finds it and names its path.
            pass
        else:
            # ASCII text holds no surrogate; other text is checked by encoding it.
            if text.isascii() or _is_utf8(text):
                return text
    try:
        return _ENCODE(encode(value, path))
    except ValueError as exc:
        raise ValueCodecError(f"{_short(path)}: {exc}") from None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads(text: str | None) -> Any:
    """Decode JSON text written by :func:`dumps` (``None`` stays ``None``).

    Text that cannot be read raises :class:`ValueCodecError`.
    """
    if text is None:
        return None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueCodecError(
            "stored value is nested too deeply for the JSON decoder to read"
        ) from None
    except ValueError as exc:
        raise ValueCodecError(f"stored value cannot be read: {exc}") from None
    # Only tagged values need a walk; a text without the tag has none.
    return decode(data) if TAG in text else data


def check(value: Any, path: str = "value") -> None:
    """Raise :class:`ValueCodecError` if ``value`` cannot be stored.

    Depth counts from ``value``: check what is stored as one piece (the whole
    outputs dict), not a part of it on its own.
    """
    # The fast path of dumps is cheaper than encode for plain values.
    dumps(value, path)
