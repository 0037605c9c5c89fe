"""Extra components for the flow/data/schedule contract tests (codes prefixed ``flow_``)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

from aiobamboo.component import (
    Component,
    EndEventHandler,
    LazyVariable,
    Service,
    StaticIntervalGenerator,
)

#: Values of every type the codec stores besides plain JSON.
CODEC_VALUES: dict[str, Any] = {
    "naive": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "aware": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    "day": dt.date(1999, 12, 31),
    "money": Decimal("12345678901234567890.1000"),
    "pair": (1, ("two", 3.5), [Decimal("0.10")]),
    "nested": {"when": dt.date(2000, 1, 1), "items": [(1, 2)], "n": None},
    "int_keys": {1: "one", 2: ("two",)},
    "text": "naïve 中文 ${not_a_ref}",
}


class InspectService(Service):
    """Copies its inputs to its outputs, and reports what it saw."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.update(data.inputs)
        data.outputs.types = {k: type(v).__name__ for k, v in data.inputs.items()}
        data.outputs.parent_inputs = dict(parent_data.inputs)
        data.outputs.service = {
            "id": self.id,
            "version": self.version,
            "root_pipeline_id": self.root_pipeline_id,
            "top_pipeline_id": self.top_pipeline_id,
            "loop": self.loop,
            "inner_loop": self.inner_loop,
        }
        return True


class InspectComponent(Component):
    code = "flow_inspect"
    name = "Inspect inputs"
    bound_service = InspectService


class ValuesService(Service):
    """Outputs :data:`CODEC_VALUES`."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.update(CODEC_VALUES)
        return True


class ValuesComponent(Component):
    code = "flow_values"
    name = "Codec values"
    bound_service = ValuesService


class SetService(Service):
    """Outputs the dict given as input ``set``."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.update(data.get_one_of_inputs("set", {}))
        return True


class SetComponent(Component):
    code = "flow_set"
    name = "Set outputs"
    bound_service = SetService


class SyncPollService(Service):
    """Plain ``def`` execute and schedule; polls ``polls`` times, recording the threads."""

    __need_schedule__ = True
    interval = StaticIntervalGenerator(0.01)

    def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.threads = [threading.current_thread().name]
        return True

    def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.threads = [*data.outputs.threads, threading.current_thread().name]
        if len(data.outputs.threads) > data.get_one_of_inputs("polls", 2):
            self.finish_schedule()
        return True


class SyncPollComponent(Component):
    code = "flow_sync_poll"
    name = "Poll in a thread"
    bound_service = SyncPollService


class PollFailService(Service):
    """Polls; the second poll fails."""

    __need_schedule__ = True
    interval = StaticIntervalGenerator(0.01)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.polls = 0
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.polls += 1
        if data.outputs.polls >= 2:
            raise RuntimeError("poll exploded")
        return True


class PollFailComponent(Component):
    code = "flow_poll_fail"
    name = "Poll then fail"
    bound_service = PollFailService


#: Root ids for which ``flow_RaiseOnce`` has raised already.
RAISED_ONCE: set[str] = set()


class RaiseOnceEnd(EndEventHandler):
    """Raises the first time it runs for a root pipeline, then succeeds."""

    code = "flow_RaiseOnce"

    def execute(self, in_subprocess: bool, root_pipeline_id: str, current_pipeline_id: str) -> None:
        if root_pipeline_id not in RAISED_ONCE:
            RAISED_ONCE.add(root_pipeline_id)
            raise RuntimeError("end handler exploded")


class FromRootVariable(LazyVariable):
    """``<rendered value>:<root data "k">:<inner_loop>``, computed asynchronously."""

    code = "flow_from_root"

    async def get_value(self) -> Any:
        return f"{self.value}:{self.pipeline_data.get('k')}:{self.inner_loop}"
