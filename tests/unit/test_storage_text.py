"""The storage core's text of a row's list of ids: json.dumps's text, made faster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiobamboo.storage import ids_json


@pytest.mark.parametrize(
    "ids",
    [
        (),
        ["c1f0"],
        ("p0", "a1", "a2"),
        ["节点", 'quote"d', "back\\slash", "new\nline", "\x00", "\ud800"],
        [1, None, "mixed"],  # not all str: json.dumps decides
    ],
)
def test_ids_read_back_as_json_dumps_writes_them(ids: Any) -> None:
    text = ids_json(ids)
    assert text == json.dumps(ids)
    assert json.loads(text) == list(ids)
