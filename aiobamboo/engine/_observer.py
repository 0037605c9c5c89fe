"""What the engine tells an observer (metrics, traces), at a few points of its work.

The engine holds ``Settings.observer`` (None by default) and checks it once at
each point, so nothing is paid when nobody observes. An observer's methods
run on the event loop, inside the engine's step: they must be quick and must
not raise (an exception there is handled as a bug of the engine: it fails the
node whose step it interrupted).
:class:`Observer` does nothing; subclass it and override what you need, or
use the ready ones in :mod:`aiobamboo.observe`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._env import Step
    from ._run import Run, State

__all__ = ["CallOutcome", "Observer", "Observers", "Phase"]

#: Which method of a component ran.
Phase = Literal["execute", "schedule"]
#: How a component call ended: returned success or failure, raised, or was
#: abandoned by an operator (forced fail, revoke).
CallOutcome = Literal["success", "failure", "raised", "abandoned"]


class Observer:
    """Does nothing; the engine calls these methods at the points they name."""

    def attach(self, scheduler: Any) -> None:
        """A scheduler using this observer started (``scheduler.runs`` holds its runs)."""

    def detach(self, scheduler: Any) -> None:
        """That scheduler stopped."""

    def pipeline_starting(self, root_id: str) -> dict[str, Any] | None:
        """``run_pipeline`` is about to store a new run; what to store with its options.

        Returned values are kept under the ``"observe"`` key of the run's stored
        options and handed back to :meth:`run_held` in any process that loads
        the run (a trace's context, for example).
        """
        return None

    def pipeline_started(self, run: Run) -> None:
        """A new run is stored."""

    def pipeline_ended(self, run: Run, how: Literal["finished", "revoked"]) -> None:
        """The run finished or was revoked (recorded, committed with the next step)."""

    def run_held(self, run: Run, how: Literal["started", "loaded"]) -> None:
        """A run is in this scheduler's memory: just started, or loaded from storage."""

    def run_left(self, run: Run, how: Literal["ended", "parked", "dropped", "stopped"]) -> None:
        """A run left this scheduler's memory (``dropped``: lease lost or reloading)."""

    def state_changed(self, run: Run, state: State) -> None:
        """A node's (or pipeline's) state changed; recorded, committed with its step."""

    @contextmanager
    def node_step(self, step: Step) -> Iterator[None]:
        """Around one step of a node: entering it, running its handler, its outcome.

        A component's ``execute`` and ``schedule`` run inside, so whatever
        this makes current (a trace span) is current for them too.
        """
        yield

    def component_called(
        self, step: Step, phase: Phase, seconds: float, outcome: CallOutcome
    ) -> None:
        """A component's ``execute`` or ``schedule`` returned (or raised)."""

    def timer_fired(self, run: Run, node_id: str, late: float) -> None:
        """A poll came due, ``late`` seconds after its due time (by the engine's clock)."""

    def callback_answered(self, accepted: bool) -> None:
        """``api.callback`` accepted a callback (stored) or refused it."""

    def command_answered(self, op: str, seconds: float, applied: bool) -> None:
        """An operation sent to the worker holding its run came back, applied or not."""


class Observers(Observer):
    """Several observers as one: each is told everything, in the order given."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def attach(self, scheduler: Any) -> None:
        for obs in self.observers:
            obs.attach(scheduler)

    def detach(self, scheduler: Any) -> None:
        for obs in self.observers:
            obs.detach(scheduler)

    def pipeline_starting(self, root_id: str) -> dict[str, Any] | None:
        stored: dict[str, Any] = {}
        for obs in self.observers:
            stored.update(obs.pipeline_starting(root_id) or {})
        return stored or None

    def pipeline_started(self, run: Run) -> None:
        for obs in self.observers:
            obs.pipeline_started(run)

    def pipeline_ended(self, run: Run, how: Literal["finished", "revoked"]) -> None:
        for obs in self.observers:
            obs.pipeline_ended(run, how)

    def run_held(self, run: Run, how: Literal["started", "loaded"]) -> None:
        for obs in self.observers:
            obs.run_held(run, how)

    def run_left(self, run: Run, how: Literal["ended", "parked", "dropped", "stopped"]) -> None:
        for obs in self.observers:
            obs.run_left(run, how)

    def state_changed(self, run: Run, state: State) -> None:
        for obs in self.observers:
            obs.state_changed(run, state)

    @contextmanager
    def node_step(self, step: Step) -> Iterator[None]:
        with _nested([obs.node_step(step) for obs in self.observers]):
            yield

    def component_called(
        self, step: Step, phase: Phase, seconds: float, outcome: CallOutcome
    ) -> None:
        for obs in self.observers:
            obs.component_called(step, phase, seconds, outcome)

    def timer_fired(self, run: Run, node_id: str, late: float) -> None:
        for obs in self.observers:
            obs.timer_fired(run, node_id, late)

    def callback_answered(self, accepted: bool) -> None:
        for obs in self.observers:
            obs.callback_answered(accepted)

    def command_answered(self, op: str, seconds: float, applied: bool) -> None:
        for obs in self.observers:
            obs.command_answered(op, seconds, applied)


@contextmanager
def _nested(managers: list[Any]) -> Iterator[None]:
    with ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield
