"""Firing node timers: the scheduler's wheel over the runs it holds, and what each timer does."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from typing import TYPE_CHECKING

import anyio
import attrs

from ..component import DataObject
from ..timing import FORCED_FAIL_AND_SKIP, NodeTiming, ParsedTimerEvent, builtin_action
from ._env import format_exc, is_cancellation, logger
from ._node_timers import EVENT, RETRY, SAVE_AFTER, TIMEOUT, NodeTimer
from ._run import P_RUNNING, P_SLEEPING, Run

if TYPE_CHECKING:
    from ._scheduler import Scheduler


@attrs.frozen(order=True)
class _Entry:
    due: float
    seq: int
    #: The run's id, not the run: a parked run must not stay in memory through its timers.
    root_id: str = attrs.field(order=False)
    timer: NodeTimer = attrs.field(order=False)


class TimerWheel:
    """Fires the node timers of the runs a scheduler holds, by its clock.

    One heap for every run: arming a timer is a push, a dropped timer is left
    in the heap and skipped when it comes up (the heap is rebuilt once most of
    it is dropped timers, so memory follows the live ones).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wake: anyio.Event | None = None
        #: The heap's size at which dropped timers are swept out of it next.
        self._compact_at = 1024
        #: (when armed, run) of each timer armed without its row, oldest first.
        self._saving: deque[tuple[float, Run]] = deque()
        self._saving_wake: anyio.Event | None = None

    def adopt(self, run: Run) -> None:
        """A run now driven here: fire its timers, those it has and those it arms."""
        timers = run.timers
        if timers is None:
            return
        timers.on_armed = self.push
        for timer in timers:
            self.push(run, timer)

    def push(self, run: Run, timer: NodeTimer) -> None:
        if not timer.saved:
            self._saving.append((timer.armed_at, run))
            if self._saving_wake is not None:
                self._saving_wake.set()
        if timer.due is None:
            return
        if len(self._heap) >= self._compact_at:
            self._heap = [entry for entry in self._heap if self._fresh(entry)]
            heapq.heapify(self._heap)
            self._compact_at = max(1024, 2 * len(self._heap))
        earliest = self._heap[0].due if self._heap else math.inf
        heapq.heappush(self._heap, _Entry(timer.due, next(self._seq), run.root_id, timer))
        if timer.due < earliest and self._wake is not None:
            self._wake.set()

    def _held(self, entry: _Entry) -> Run | None:
        """The run in memory whose live timer the entry is, if it still is."""
        if entry.timer.due != entry.due:
            return None
        run = self.scheduler.runs.get(entry.root_id)
        if run is None or run.timers is None or not run.timers.live(entry.timer):
            return None
        return run

    def _fresh(self, entry: _Entry) -> bool:
        return self._held(entry) is not None

    async def loop(self) -> None:
        while True:
            self._wake = wake = anyio.Event()
            now = self.clock.now()
            heap = self._heap
            while heap and heap[0].due <= now:
                entry = heapq.heappop(heap)
                run = self._held(entry)
                tg = self.scheduler.task_group
                if run is not None and tg is not None:
                    tg.start_soon(fire, self.scheduler, run, entry.timer)
            while heap and not self._fresh(heap[0]):
                heapq.heappop(heap)
            until = heap[0].due if heap else math.inf
            await self.clock.wait(wake, until)

    async def save_loop(self) -> None:
        """Write the rows of the timers whose attempt has run ``SAVE_AFTER`` seconds."""
        saving = self._saving
        while True:
            if not saving:
                self._saving_wake = anyio.Event()
                await self._saving_wake.wait()
                continue
            delay = saving[0][0] + SAVE_AFTER - time.monotonic()
            if delay > 0:
                # A little longer, so that one round takes the timers armed meanwhile too.
                await anyio.sleep(delay + SAVE_AFTER / 2)
                continue
            ripe = time.monotonic() - SAVE_AFTER
            runs: dict[int, Run] = {}
            while saving and saving[0][0] <= ripe:
                run = saving.popleft()[1]
                runs[id(run)] = run
            tg = self.scheduler.task_group
            for run in runs.values():
                timers = run.timers
                if timers is None or self.scheduler.runs.get(run.root_id) is not run:
                    continue
                if timers.save() and tg is not None:
                    tg.start_soon(_commit_saved, run)
                elif not timers.unsettled():
                    run.recheck_idle()


async def _commit_saved(run: Run) -> None:
    try:
        await run.checkpoint("timer")
    except Exception as exc:
        # The run is reloaded from its last commit, and arms its timers again.
        logger.warning("run %s: storing its timers failed: %r", run.root_id, exc)
        return
    run.recheck_idle()


async def fire(scheduler: Scheduler, run: Run, timer: NodeTimer) -> None:
    """Apply a due timer to the run in memory; it does nothing once its attempt ended."""
    timers = run.timers
    if timers is None or scheduler.runs.get(run.root_id) is not run or not timers.live(timer):
        return  # parked or dropped meanwhile (its row fires it later), or its attempt ended
    if timer.due is None or timer.due > scheduler.clock.now():
        return
    run.pins += 1
    try:
        if timer.kind == RETRY:
            await _retry(scheduler, run, timer)
        elif timer.kind == TIMEOUT:
            timing = timers.timed[timer.node_id]
            seconds = timing.timeout or 0.0
            await _force(
                scheduler,
                run,
                timer,
                timing.timeout_action,
                f"forced fail by timeout: still running after {seconds:g} s",
            )
        else:
            await _event(scheduler, run, timer)
    except BaseException as exc:
        if is_cancellation(exc):
            raise
        # A failed commit has the run reloaded, and its timer, still due, fires then.
        logger.warning(
            "run %s: timer %s of node %s not applied: %r", run.root_id, timer.id, timer.node_id, exc
        )
    finally:
        run.pins -= 1
        if not run.pins and run.idle and scheduler.runs.get(run.root_id) is run:
            scheduler._note_idle(run)


async def _retry(scheduler: Scheduler, run: Run, timer: NodeTimer) -> None:
    timers = run.timers
    assert timers is not None
    st = run.states.get(timer.node_id)
    proc = run.process_at(timer.node_id, P_SLEEPING)
    if st is None or proc is None:
        timers.done(timer)
        return
    timers.done(timer)
    scheduler._retry(run, st, proc)
    await run.checkpoint("timer")
    proc.wake()


async def _force(
    scheduler: Scheduler, run: Run, timer: NodeTimer, action: str, ex_data: str
) -> None:
    """Fail the node as ``forced_fail_activity`` does; then skip it, or retry it by policy."""
    timers = run.timers
    assert timers is not None
    node = run.spec.nodes[timer.node_id]
    st = run.states[timer.node_id]
    proc = run.process_at(timer.node_id)
    if proc is None:
        timers.done(timer)
        return
    if timer.due is not None and timer.kind != EVENT:
        timers.done(timer)
    old_version = scheduler.force_fail(run, st, proc, ex_data)
    skip = action == FORCED_FAIL_AND_SKIP and node.can_skip
    if skip:
        scheduler._skip(run, st)
        proc.current_node_id = node.first_target
        proc.status = P_RUNNING
        run.put_process(proc)
    else:
        timers.failed_by_itself(st)
    await run.checkpoint("timer")
    run.abandon(timer.node_id, old_version)
    if skip:
        proc.wake()


async def _event(scheduler: Scheduler, run: Run, timer: NodeTimer) -> None:
    timers = run.timers
    assert timers is not None
    assert timer.due is not None
    event = _event_of(timers.timed[timer.node_id], timer.index)
    if event is None:
        timers.done(timer)
        return
    timer.fired += 1
    if event.repetitions is None or timer.fired < event.repetitions:
        # Counted from this firing, as the original does: a late firing delays the next.
        timers.again(timer, event.due_after(max(timer.due, scheduler.clock.now())))
    else:
        timers.spend(timer)
    builtin = builtin_action(event.action)
    if builtin is not None:
        await _force(
            scheduler,
            run,
            timer,
            builtin,
            f"forced fail by timer event {event.index} ({event.timer_type})",
        )
        return
    # The firing is stored first: user code runs at most once per firing.
    await run.checkpoint("timer")
    await _user_action(scheduler, run, timer, event)


def _event_of(timing: NodeTiming, index: int) -> ParsedTimerEvent | None:
    return next((e for e in timing.events if e.index == index), None)


async def _user_action(
    scheduler: Scheduler, run: Run, timer: NodeTimer, event: ParsedTimerEvent
) -> None:
    cls = scheduler.env.components.get_timer_action(event.action)
    if cls is None:
        logger.error(
            "run %s: timer event %d of node %s names action %r, which is not registered",
            run.root_id,
            event.index,
            timer.node_id,
            event.action,
        )
        return
    data = DataObject(run.exec_inputs(timer.node_id), run.exec_outputs(timer.node_id))
    parent = DataObject(run.root_data, {})
    try:
        action = cls(run.root_id, timer.node_id, timer.version)
        result = await scheduler.env.call(action.do, data, parent)
    except Exception as exc:
        logger.warning(
            "run %s: timer action %r of node %s raised: %s",
            run.root_id,
            event.action,
            timer.node_id,
            format_exc(exc),
        )
        return
    logger.info(
        "run %s: timer action %r of node %s returned %r",
        run.root_id,
        event.action,
        timer.node_id,
        result,
    )
