"""What handlers share: settings, the component library, user-code calls, outcomes."""

from __future__ import annotations

import functools
import inspect
import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .. import states
from ..component import ComponentLibrary
from ._run import P_SLEEPING, Process, Run, State
from ._spec import NodeSpec

if TYPE_CHECKING:
    from ._events import EventHub

logger = logging.getLogger("aiobamboo.engine")

# Exclusive gateway strategies (semantics §5.9).
STRATEGY_ONLY = 1
STRATEGY_FIRST = 2


@attrs.frozen(kw_only=True)
class Settings:
    """Engine settings; pass ``settings=Settings(...)`` to a runtime."""

    #: A node entered more often than this fails (§5.1, the original's default).
    rerun_limit: int = 100
    #: ONLY (1) evaluates every exclusive-gateway condition; FIRST (2) stops at the first true one.
    exclusive_gateway_strategy: int = STRATEGY_ONLY
    #: Threads for plain ``def`` components, hooks and lazy variables.
    thread_pool_size: int = 32
    #: Delay before a run whose storage failed is reloaded and resumed.
    recovery_delay: float = 0.5
    #: Runs a worker holds at once (waiting runs count too).
    concurrency: int = 10_000
    #: How often a worker looks for work when no signal arrives.
    poll_interval: float = 0.2
    #: How long an operation sent to another process's run waits for its owner.
    command_timeout: float = 30.0


class Env:
    """Per-scheduler services handed to every handler."""

    def __init__(self, settings: Settings, components: ComponentLibrary, events: EventHub) -> None:
        self.settings = settings
        self.components = components
        self.events = events
        self.limiter = anyio.CapacityLimiter(settings.thread_pool_size)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call user code: coroutines on the loop, plain functions on the thread pool."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        result = await anyio.to_thread.run_sync(
            functools.partial(fn, *args), limiter=self.limiter, abandon_on_cancel=True
        )
        if inspect.isawaitable(result):
            result = await result
        return result


def format_exc(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@attrs.define(slots=True)
class Outcome:
    """What a handler decided for its process."""

    kind: str  # next | sleep | fork | die | stale
    next_node_id: str = ""
    children: list[tuple[str, str]] = attrs.Factory(list)  # (first node, destination)


SLEEP = Outcome("sleep")
STALE = Outcome("stale")
DIE = Outcome("die")


def go(node_id: str) -> Outcome:
    return Outcome("next", node_id)


@attrs.define(slots=True, eq=False)
class Step:
    """One node execution: the handler's view of the world."""

    env: Env
    run: Run
    proc: Process
    node: NodeSpec
    state: State

    @property
    def top_pipeline_id(self) -> str:
        return self.proc.stack[-1]

    @property
    def version(self) -> str:
        return self.state.version

    def is_current(self) -> bool:
        """False once an operator changed this node's attempt (forced fail, revoke)."""
        st = self.run.states.get(self.node.id)
        return (
            st is self.state
            and st.version == self.state.version
            and st.state == states.RUNNING
            and not self.run.revoked
        )

    def finish(self, *, error_ignored: bool = False) -> None:
        st = self.state
        st.state = states.FINISHED
        st.archived_time = time.time()
        if error_ignored:
            st.error_ignored = True
        self.run.put_state(st)
        self.run.emit_state(st)

    def fail(
        self, outputs: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None
    ) -> Outcome:
        """FAILED at this node; the process sleeps there until an operator acts."""
        if outputs is not None:
            if inputs is None:
                inputs = self.run.exec_inputs(self.node.id)
            self.run.put_exec_data(self.node.id, inputs, outputs)
        st = self.state
        st.state = states.FAILED
        st.archived_time = time.time()
        self.run.put_state(st)
        self.run.emit_state(st)
        self.proc.status = P_SLEEPING
        self.run.put_process(self.proc)
        return SLEEP
