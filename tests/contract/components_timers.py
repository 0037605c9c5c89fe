"""A polling component whose interval is an hour (registered in the default library)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiobamboo.component import Component, Service, StaticIntervalGenerator

#: How often each node id's schedule() ran (a poll).
POLLS: Counter[str] = Counter()
HOUR = 3600.0


class HourlyPollService(Service):
    """Polls once at once, then every hour; finishes after input ``polls`` polls (default 3)."""

    __need_schedule__ = True
    interval = StaticIntervalGenerator(HOUR)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.polls = 0
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        POLLS[self.id] += 1
        data.outputs.polls = data.outputs.get("polls", 0) + 1
        if callback_data is not None:
            data.outputs.callback_data = callback_data
        if data.outputs.polls >= data.get_one_of_inputs("polls", 3):
            self.finish_schedule()
        return True


class HourlyPollComponent(Component):
    code = "timer_hourly_poll"
    name = "Poll every hour"
    bound_service = HourlyPollService
