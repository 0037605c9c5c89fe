"""The value codec's limits: what cannot be read back is refused when written.

Every refusal is a ValueCodecError naming the path; reading hostile text gives
a ValueCodecError too, never RecursionError.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from typing import Any

import pytest

from aiobamboo import codec
from aiobamboo.exceptions import ValueCodecError


def _nested(depth: int, leaf: Any = 1, wrap: Any = None) -> Any:
    """``leaf`` inside ``depth`` containers made by ``wrap`` (lists by default)."""
    value = leaf
    for _ in range(depth):
        value = [value] if wrap is None else wrap(value)
    return value


def _refused(value: Any, path: str = "data") -> str:
    """The messages of dumps, check and encode agree; one of them."""
    with pytest.raises(ValueCodecError) as dumped:
        codec.dumps(value, path)
    with pytest.raises(ValueCodecError) as checked:
        codec.check(value, path)
    with pytest.raises(ValueCodecError):
        codec.encode(value, path)
    assert str(dumped.value) == str(checked.value)
    return str(dumped.value)


# -- reference cycles ----------------------------------------------------------------


def _self_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _self_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["me"] = value
    return value


def _through_tuple() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["t"] = ("x", [value])
    return value


def _through_int_keys() -> dict[str, Any]:
    inner: dict[Any, Any] = {}
    value = {"k": [inner]}
    inner[1] = value
    return value


def _twice_in_a_cycle() -> list[Any]:
    # Each level refers to itself twice: a walk that follows every reference
    # without a bound would double its work per level.
    value: list[Any] = []
    value.extend([value, value])
    return value


@pytest.mark.parametrize(
    ("make", "where", "again"),
    [
        (_self_list, "data[1]", "data"),
        (_self_dict, "data.me", "data"),
        (_through_tuple, "data.t[1][0]", "data"),
        (_through_int_keys, "data.k[0][1]", "data"),
        (_twice_in_a_cycle, "data[0]", "data"),
    ],
)
def test_a_value_that_contains_itself_is_refused_naming_the_path(
    make: Any, where: str, again: str
) -> None:
    message = _refused(make())
    assert message.startswith(f"{where}: ")
    assert f"this is {again} again" in message
    assert "cycle" in message


def test_a_cycle_below_plain_data_is_refused_with_the_full_path() -> None:
    message = _refused({"outer": [{"ok": 1}, {"loop": _self_list()}]}, "outputs")
    assert message.startswith("outputs.outer[1].loop[1]: ")
    assert "outputs.outer[1].loop again" in message


def test_shared_references_without_a_cycle_are_stored_twice() -> None:
    shared = [1, {"x": 2}]
    when = dt.date(2024, 1, 1)
    value = {"a": shared, "b": shared, "c": (shared, shared), "d": [when, when]}
    assert codec.loads(codec.dumps(value)) == value
    plain = {"a": shared, "b": [shared, shared]}
    assert codec.dumps(plain) == json.dumps(plain, separators=(",", ":"))


# -- depth ---------------------------------------------------------------------------


def test_max_depth_of_plain_json_is_stored_one_more_is_refused() -> None:
    deepest = _nested(codec.MAX_DEPTH)
    assert codec.loads(codec.dumps(deepest)) == deepest
    codec.check(deepest)
    message = _refused(_nested(codec.MAX_DEPTH + 1))
    assert message.startswith("data[0]")
    assert f"more than {codec.MAX_DEPTH} levels" in message


def test_max_depth_of_dicts_and_lists_mixed_is_written_as_json_writes_it() -> None:
    # Dicts and lists alternate, so the fast check walks both kinds to the bound.
    deepest = _nested(codec.MAX_DEPTH, wrap=lambda v: {"k": v} if type(v) is list else [v, "x"])
    assert codec._plain(deepest)
    assert codec.dumps(deepest) == json.dumps(deepest, separators=(",", ":"))
    deeper = [deepest]
    assert not codec._plain(deeper)
    assert f"more than {codec.MAX_DEPTH} levels" in _refused(deeper)


def test_depth_counts_the_stored_wrappers_of_tuples_and_int_keyed_dicts() -> None:
    # A tuple is stored as three levels: {"__aiobamboo__": ["tuple", [items]]}.
    deepest = _nested(codec.MAX_DEPTH // 3, wrap=lambda v: (v,))
    assert codec.loads(codec.dumps(deepest)) == deepest
    assert "levels" in _refused(_nested(codec.MAX_DEPTH // 3 + 1, wrap=lambda v: (v,)))
    int_keyed = _nested(codec.MAX_DEPTH // 4, wrap=lambda v: {1: v})
    assert codec.loads(codec.dumps(int_keyed)) == int_keyed
    assert "levels" in _refused(_nested(codec.MAX_DEPTH // 4 + 1, wrap=lambda v: {1: v}))
    dated = _nested(codec.MAX_DEPTH - 2, dt.date(2024, 1, 1))
    assert codec.loads(codec.dumps(dated)) == dated
    assert "levels" in _refused([dated])


def test_a_very_deep_value_holding_the_tag_is_refused_not_written() -> None:
    message = _refused({"v": _nested(5000, codec.TAG)}, "callback data")
    assert message.startswith("callback data.v[0][0]")
    assert "…" in message  # a 5000-level path is shortened
    assert len(message) < 400


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_reading_hostile_deep_text_raises_value_codec_error(depth: int) -> None:
    for text in (
        "[" * depth + "]" * depth,
        '{"__aiobamboo__":["tuple",[' + "[" * depth + "]" * depth + "]]}",
    ):
        with pytest.raises(ValueCodecError, match="nested too deeply"):
            codec.loads(text)


def test_reading_deep_tagged_text_does_not_recurse_in_python() -> None:
    # Deeper than a recursive decoder reaches (two frames a level), within
    # what the JSON decoder reads.
    depth = 700
    text = "[" * depth + '{"__aiobamboo__":["tuple",[1]]}' + "]" * depth
    value = codec.loads(text)
    for _ in range(depth):
        assert type(value) is list
        (value,) = value
    assert value == (1,)


def test_decode_builds_tuples_after_their_items_and_keeps_key_order() -> None:
    value = {
        "z": (1, (2, [3, (4,)]), {5: (6,)}),
        "a": [(), ((),)],
        "m": {codec.TAG: [dt.datetime(2024, 1, 2, 3, 4, 5), Decimal("0.10")]},
    }
    got = codec.loads(codec.dumps(value))
    assert got == value
    assert list(got) == ["z", "a", "m"]
    assert type(got["z"][1][1][1]) is tuple
    assert type(got["z"][2][5]) is tuple
    assert got["a"] == [(), ((),)]
    assert str(got["m"][codec.TAG][1]) == "0.10"


@pytest.mark.parametrize(
    "text",
    [
        '{"__aiobamboo__":5}',
        '{"__aiobamboo__":["tuple",5]}',
        '{"__aiobamboo__":["dict",[[[1],2]]]}',
        '{"__aiobamboo__":["dict",{"a":1}]}',
        '{"__aiobamboo__":["decimal","abc"]}',
        '{"__aiobamboo__":["datetime",7]}',
        '{"__aiobamboo__":["set",[1]]}',
        '[{"__aiobamboo__":["date","yesterday"]}]',
        "{",
        "1" * 5000,
    ],
)
def test_reading_malformed_text_raises_value_codec_error(text: str) -> None:
    with pytest.raises(ValueCodecError):
        codec.loads(text)


# -- scalars JSON or the databases cannot take ---------------------------------------


def test_an_int_too_long_to_convert_is_refused_naming_the_path() -> None:
    limit = sys.get_int_max_str_digits()
    assert limit  # the interpreter's default limit is on
    longest = 10 ** (limit - 1)
    assert codec.loads(codec.dumps({"n": longest})) == {"n": longest}
    for value, where in (
        ({"n": 10**limit}, "root_pipeline_data.n"),
        ({"n": [1, -(10**5000)]}, "root_pipeline_data.n[1]"),
        ({"n": (10**5000,)}, "root_pipeline_data.n[0]"),
        ({10**5000: 1}, "root_pipeline_data key"),
    ):
        message = _refused(value, "root_pipeline_data")
        assert message.startswith(where), message
        assert "digits" in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_are_refused_as_values_and_as_keys(bad: float) -> None:
    assert _refused({"x": [bad]}).startswith("data.x[0]: ")
    assert "finite" in _refused({bad: 1})
    assert "finite" in _refused(bad)


def test_strings_with_an_unpaired_surrogate_are_refused_naming_the_path() -> None:
    # json writes them as they are with ensure_ascii=False; no runtime can
    # store the text as UTF-8.
    assert _refused({"s": ["ok", "a\ud800b"]}).startswith("data.s[1]: string holds")
    assert _refused({"k\udc00": 1}).startswith("data: dict key 'k\\udc00' holds")
    assert "surrogate" in _refused(("\udfff",))
    assert "surrogate" in _refused({1: "\ud83d"})
    paired = {"emoji": "\U0001f600 中文", "nul": "a\x00b"}
    assert codec.loads(codec.dumps(paired)) == paired


class _OddKey:
    def __repr__(self) -> str:
        return "odd \udc80 key"


def test_a_refusal_message_can_itself_be_stored() -> None:
    # ex_data carries the message: it must not hold the surrogate it reports.
    for value in (
        {"k\udc00": 1},
        {1: {"\ud800": 2}},
        {"x": "\ud800"},
        {_OddKey(): 1},
        {(1, 10**5000): 1},
        {"\ud800" * 10_000: 1},
    ):
        message = _refused(value)
        assert codec.loads(codec.dumps({"ex_data": message}))["ex_data"] == message
        assert len(message) < 300


# -- what must keep working ----------------------------------------------------------


def test_plain_json_is_written_exactly_as_json_writes_it() -> None:
    value = {"_result": True, "_loop": 1, "greeting": "héllo", "items": [1, 2.5, None, {"a": []}]}
    assert codec.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert codec.loads(codec.dumps(value)) == value


def test_other_types_are_still_refused_naming_the_path() -> None:
    message = _refused({"a": [1, {"s": {1, 2}}]}, "outputs")
    assert message.startswith("outputs.a[1].s: values of type set")


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        "x",
        'é\u2028\n\x00"',
        0,
        -(10**30),
        1.5,
        1e300,
        True,
        None,
        {"a": [1, {"b": None, "": [[], {}]}], "é": "ü"},
    ],
)
def test_plain_values_are_written_as_json_dumps_writes_them(value: Any) -> None:
    """Stored text must stay byte-identical, whichever encoder the codec picked."""
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert codec.dumps(value) == expected
    assert codec.dumps((value,)) == '{"__aiobamboo__":["tuple",[' + expected + "]]}"


def test_the_encoder_falls_back_without_the_c_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    encode = codec._encoder()
    value = {"a": [1, 2.5, None, "é"], "b": {"c": True}}
    assert encode(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
