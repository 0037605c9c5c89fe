"""Node timers: an activity's timeout, its automatic retries and its timer events.

Each is a row of the ``timers`` table bound to one attempt of a node (its
version) and to the state that attempt must be in: a timeout or a timer event
lives while the node is RUNNING at that version, an automatic retry while it is
FAILED at that version. Any change of the node's state or version drops it, in
the same batch as the change, so a timer never fires on an attempt that ended
in time: the check and the firing happen on the event loop with no ``await``
in between, and the timer's row is stored with the action's effect, so a
firing happens once even across a crash.

Most attempts end long before their deadline, so the row of a timeout or timer
event is written only once its attempt has been running for ``SAVE_AFTER``
seconds (or when it fires first): an attempt that ends sooner costs no write at
all. A run does not park with a timer unsaved. After a crash within those first
moments, the reloaded attempt (which runs its component again) arms afresh.

A run in memory has its timers fired by the scheduler's timer wheel
(``_timer_wheel.py``); a parked run is claimed by its earliest due timer like
any other (``claim_woken``) and, once loaded, fires it from memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

import attrs

from .. import states
from ..runtime import TimerRow
from ..timing import NodeTiming
from ._clock import Clock

if TYPE_CHECKING:
    from ._run import Run, State

TIMEOUT: Final = "timeout"
RETRY: Final = "retry"
EVENT: Final = "event"

#: Seconds an attempt runs before the rows of its timeout and timer events are written.
SAVE_AFTER: Final = 0.05
#: The stored due time of a timer event that fired for the last time while its
#: attempt still runs: never due, but it shows the attempt armed its timers.
SPENT: Final = 1e300


@attrs.define(slots=True, eq=False)
class NodeTimer:
    """One timer of one attempt of a node; ``due`` None once it fired for good or was dropped."""

    id: str
    node_id: str
    version: str
    kind: str
    due: float | None
    #: A timer event: its position in the node's list (from 1), and how often it fired.
    index: int = 0
    fired: int = 0
    #: Whether its row is stored (or in the batch being stored).
    saved: bool = False
    #: When it was armed (``time.monotonic``): its row is written ``SAVE_AFTER`` later.
    armed_at: float = 0.0

    @property
    def expects(self) -> str:
        """The node state the timer lives in."""
        return states.FAILED if self.kind == RETRY else states.RUNNING

    def row_kind(self) -> str:
        # The firing count of a repeating event travels in the kind: the table
        # has no other column for it, and the count must survive a restart.
        return f"{EVENT}:{self.index}:{self.fired}" if self.kind == EVENT else self.kind


def _timer_from_row(row: TimerRow) -> NodeTimer | None:
    due = None if row.due_time is None or row.due_time >= SPENT else row.due_time
    if row.kind in (TIMEOUT, RETRY):
        return NodeTimer(row.id, row.node_id, row.version, row.kind, due, saved=True)
    parts = row.kind.split(":")
    if len(parts) == 3 and parts[0] == EVENT and parts[1].isdigit() and parts[2].isdigit():
        return NodeTimer(
            row.id,
            row.node_id,
            row.version,
            EVENT,
            due,
            int(parts[1]),
            int(parts[2]),
            saved=True,
        )
    return None


class RunTimers:
    """The node timers of one run, kept in step with its node states."""

    def __init__(self, run: Run, timed: dict[str, NodeTiming], clock: Clock) -> None:
        self.run = run
        self.timed = timed
        self.clock = clock
        self.by_node: dict[str, list[NodeTimer]] = {}
        #: Node id -> the RUNNING version whose timers were armed (each attempt arms once).
        self.armed: dict[str, str] = {}
        #: Told of each timer armed (the scheduler's wheel, once the run is registered).
        self.on_armed: Callable[[Run, NodeTimer], None] | None = None
        #: Timers armed whose rows are not written yet (see ``SAVE_AFTER``).
        self.unsaved: list[NodeTimer] = []

    # -- recording -------------------------------------------------------------
    def _put(self, timer: NodeTimer) -> None:
        timer.saved = True
        due = timer.due
        if due is None and timer.node_id in self.by_node and timer in self.by_node[timer.node_id]:
            due = SPENT  # fired for good, its attempt still running
        self.run.batch.timers[timer.id] = TimerRow(
            id=timer.id,
            root_id=self.run.root_id,
            node_id=timer.node_id,
            version=timer.version,
            kind=timer.row_kind(),
            due_time=due,
        )

    def _arm(self, timer: NodeTimer, *, save: bool) -> None:
        self.by_node.setdefault(timer.node_id, []).append(timer)
        timer.armed_at = time.monotonic()
        if save:
            self._put(timer)
        else:
            self.unsaved.append(timer)
        if self.on_armed is not None:
            self.on_armed(self.run, timer)

    def save(self) -> bool:
        """Put the rows of the timers armed ``SAVE_AFTER`` ago or more in the batch.

        True if it put any: the caller commits them.
        """
        if not self.unsaved:
            return False
        ripe = time.monotonic() - SAVE_AFTER
        kept: list[NodeTimer] = []
        put = False
        for timer in self.unsaved:
            if timer.saved or not self._holds(timer):
                continue
            if timer.armed_at > ripe:
                kept.append(timer)
                continue
            self._put(timer)
            put = True
        self.unsaved = kept
        return put

    def _holds(self, timer: NodeTimer) -> bool:
        listed = self.by_node.get(timer.node_id)
        return listed is not None and timer in listed

    def done(self, timer: NodeTimer) -> None:
        """The timer's attempt ended (or it fired, not to come again): it is dropped."""
        timer.due = None
        listed = self.by_node.get(timer.node_id)
        if listed is not None and timer in listed:
            listed.remove(timer)
            if not listed:
                del self.by_node[timer.node_id]
        if timer.saved:
            self._put(timer)

    def spend(self, timer: NodeTimer) -> None:
        """A timer event fired for the last time; it stays, inert, while its attempt runs."""
        timer.due = None
        self._put(timer)

    def again(self, timer: NodeTimer, due: float) -> None:
        """A repeating event fired and comes again at ``due``."""
        timer.due = due
        self._put(timer)
        if self.on_armed is not None:
            self.on_armed(self.run, timer)

    # -- following the node states ----------------------------------------------
    def state_changed(self, st: State) -> None:
        """Drop the timers ``st`` ended; arm those of an attempt that starts running."""
        listed = self.by_node.get(st.node_id)
        if listed:
            for timer in list(listed):
                if timer.version != st.version or timer.expects != st.state:
                    self.done(timer)
        if st.state == states.RUNNING and self.armed.get(st.node_id) != st.version:
            self.armed[st.node_id] = st.version
            timing = self.timed[st.node_id]
            self._arm_running(st, timing)

    def _arm_running(self, st: State, timing: NodeTiming) -> None:
        now = self.clock.now()
        if timing.timeout is not None:
            self._arm(
                NodeTimer(
                    f"{st.version}.{TIMEOUT}", st.node_id, st.version, TIMEOUT, now + timing.timeout
                ),
                save=False,
            )
        for event in timing.events:
            self._arm(
                NodeTimer(
                    f"{st.version}.{EVENT}{event.index}",
                    st.node_id,
                    st.version,
                    EVENT,
                    event.due_after(now),
                    event.index,
                ),
                save=False,
            )

    def failed_by_itself(self, st: State) -> None:
        """The node failed on its own (not by an operator): retry it if its policy says so."""
        timing = self.timed.get(st.node_id)
        node = self.run.spec.nodes.get(st.node_id)
        if timing is None or timing.retry is None or node is None or not node.can_retry:
            return
        attempt = st.retry + 1
        if attempt >= timing.retry.max_attempts:
            return
        due = self.clock.now() + timing.retry.delay_before(attempt)
        # Written at once: it is stored with the failure, which is committed anyway.
        self._arm(NodeTimer(f"{st.version}.{RETRY}", st.node_id, st.version, RETRY, due), save=True)

    # -- reading -----------------------------------------------------------------
    def __iter__(self) -> Iterator[NodeTimer]:
        for listed in self.by_node.values():
            yield from listed

    def next_due(self) -> float:
        due = math.inf
        for timer in self:
            if timer.due is not None and timer.due < due:
                due = timer.due
        return due

    def unsettled(self) -> bool:
        """Whether a timer still running has no row yet: the run must not park."""
        return any(not t.saved and self._holds(t) for t in self.unsaved)

    def live(self, timer: NodeTimer) -> bool:
        return timer.due is not None and self._holds(timer)

    def retry_pending(self, node_id: str) -> bool:
        return any(t.kind == RETRY for t in self.by_node.get(node_id, ()))

    def restore(self, rows: Sequence[TimerRow]) -> None:
        """Take the timers of a run loaded from storage; arm those never saved afresh."""
        for row in rows:
            timer = _timer_from_row(row)
            if timer is None or row.node_id not in self.timed:
                continue
            st = self.run.states.get(timer.node_id)
            if st is None or st.version != timer.version or st.state != timer.expects:
                continue  # its attempt ended in a commit that did not drop it
            self.by_node.setdefault(timer.node_id, []).append(timer)
        for node_id, timing in self.timed.items():
            st = self.run.states.get(node_id)
            if st is None or st.state != states.RUNNING or not timing.arms_when_running:
                continue
            self.armed[node_id] = st.version
            if not any(t.expects == states.RUNNING for t in self.by_node.get(node_id, ())):
                # Stopped within SAVE_AFTER of its start: the attempt's rows were never written.
                self._arm_running(st, timing)
