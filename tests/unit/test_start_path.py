"""The start of a pipeline: its stored options, and the tasks that drive its run."""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo import api, bench, codec
from aiobamboo.engine._scheduler import _options_json
from aiobamboo.testing import MemoryRuntime


def _options(**changes: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "root_pipeline_data": {},
        "root_pipeline_context": {},
        "subprocess_context": {},
        "cycle_tolerate": False,
        "start_node_id": None,
        "condition_rules": "standard",
    }
    options.update(changes)
    return options


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"cycle_tolerate": True},
        {"condition_rules": "bamboo"},
        {"root_pipeline_data": {"a": 1}},
        {"root_pipeline_context": {"b": [1, 2]}},
        {"subprocess_context": {"c": None}},
        {"start_node_id": "n1"},
    ],
)
def test_the_stored_options_are_their_codec_text_every_time(changes: dict[str, Any]) -> None:
    for _ in range(3):  # the bare ones come from a memo after the first
        assert _options_json(_options(**changes)) == codec.dumps(_options(**changes), "options")


async def test_a_started_run_stores_the_options_it_was_started_with() -> None:
    async with MemoryRuntime(components=bench.library) as runtime:
        trees = [bench.single()[0] for _ in range(3)]
        assert (await api.run_pipeline(runtime, trees[0])).result
        assert (await api.run_pipeline(runtime, trees[1], condition_rules="bamboo")).result
        assert (await api.run_pipeline(runtime, trees[2], cycle_tolerate=True)).result
        stored = [codec.loads(runtime.storage.runs[t["id"]].options_json) for t in trees]
    assert stored == [
        _options(),
        _options(condition_rules="bamboo"),
        _options(cycle_tolerate=True),
    ]
