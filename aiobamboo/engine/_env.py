"""What handlers share: settings, the component library, user-code calls, outcomes."""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Literal

import anyio
import attrs

from .. import states
from ..component import ComponentLibrary
from ..template import CONDITION_RULES, DEFAULT_SANDBOX, Sandbox, check_module_names
from ._clock import Clock, SystemClock
from ._observer import Observer
from ._run import P_SLEEPING, Process, Run, State
from ._spec import NodeSpec

logger = logging.getLogger("aiobamboo.engine")


class Strategy(enum.IntEnum):
    """How an exclusive gateway evaluates its conditions."""

    #: Evaluate every condition; more than one true is an error.
    ONLY = 1
    #: Stop at the first true condition.
    FIRST = 2


STRATEGY_ONLY = Strategy.ONLY
STRATEGY_FIRST = Strategy.FIRST

#: What a handler decided for its process: go on to a node, wait where it is,
#: run branches, end, or re-read a node an operator changed meanwhile.
OutcomeKind = Literal["next", "sleep", "fork", "die", "stale"]


def _non_negative_or_none(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(
            f"{attribute.name} must be a number of seconds >= 0 or None, got {value!r}"
        )


def _condition_rules(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in CONDITION_RULES:
        raise ValueError(f"{attribute.name} must be one of {CONDITION_RULES}, got {value!r}")


def _a_clock(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Clock):
        raise TypeError(f"clock must have now() and wait(event, until), got {value!r}")


@attrs.frozen(kw_only=True)
class Settings:
    """Engine settings; pass ``settings=Settings(...)`` to a runtime."""

    #: A node entered more often than this fails (the original's default).
    rerun_limit: int = 100
    #: ONLY (1) evaluates every exclusive-gateway condition; FIRST (2) stops at the first true one.
    exclusive_gateway_strategy: Strategy = attrs.field(default=STRATEGY_ONLY, converter=Strategy)
    #: Threads for plain ``def`` components, hooks and lazy variables.
    thread_pool_size: int = 32
    #: Delay before a run whose storage failed is reloaded and resumed.
    recovery_delay: float = 0.5
    #: Runs a worker holds in memory at once; parked runs do not count. Runs
    #: beyond it, those of its own ``run_pipeline`` calls included, wait in
    #: storage and are loaded as runs park or end. With ``park_after=None``
    #: waiting runs never leave: size it to the pipelines that wait at once.
    concurrency: int = 1_000
    #: How often a worker looks for work when no signal arrives.
    poll_interval: float = 0.2
    #: How long an operation sent to another process's run waits for its owner.
    command_timeout: float = 30.0
    #: How long a cancelled ``async def`` component call (forced fail, revoke,
    #: shutdown) may take to stop; one that ignores cancellation longer is
    #: left running on its own, and its result is never used.
    abandon_timeout: float = 5.0
    #: Warn (naming the component) when the event loop has not run for this
    #: many seconds, e.g. an ``async def`` component calling ``time.sleep``;
    #: None turns the watchdog off.
    loop_stall_warning: float | None = 1.0
    #: A run that has waited this many seconds on nothing but the outside world
    #: (callbacks, operators, timers due later than this) leaves memory, and on
    #: Postgres its lease; a callback, an operation or a due timer loads it again
    #: in any worker. None keeps every run in memory until it ends.
    park_after: float | None = attrs.field(default=0.5, validator=_non_negative_or_none)
    #: Seconds committed events are kept for subscribers (``api.subscribe``
    #: resuming from a cursor); None keeps them for ever.
    event_retention: float | None = attrs.field(
        default=7 * 24 * 3600.0, validator=_non_negative_or_none
    )
    #: How gateway conditions are evaluated unless ``run_pipeline`` says:
    #: "standard" (normal precedence, no truncation) or "bamboo" (the
    #: original's boolrule: left to right, floats truncated, its string rules).
    condition_rules: str = attrs.field(default="standard", validator=_condition_rules)
    #: Modules templates may use inside ``${...}``, among ``datetime``,
    #: ``json``, ``math`` and ``time`` (the original's
    #: ``MAKO_SANDBOX_IMPORT_MODULES``; its ``{module: alias}`` form is accepted
    #: without renaming). Only their side-effect-free members are reachable,
    #: within the sandbox's limits. None by default.
    template_modules: tuple[str, ...] = attrs.field(default=(), converter=check_module_names)
    #: Where timers read the time and wait; tests pass
    #: :class:`aiobamboo.testing.ManualClock` to move it by hand.
    clock: Clock = attrs.field(factory=SystemClock, validator=_a_clock)
    #: Whether a worker claims runs it did not start: a client's, a released
    #: or a dead worker's, a parked one woken by a callback or a timer. False
    #: makes a worker that drives only the runs it starts and those it is asked
    #: to operate on (claimed by id), and applies the commands sent to those, as
    #: the ``aiobamboo`` command does on a SQLite file no worker holds: it may
    #: lack the components of the others. Pair it with ``park_after=None``, so
    #: that its runs stay where the commands sent to them are applied.
    claim_runs: bool = True
    #: Told of the engine's work (metrics, traces): see :mod:`aiobamboo.observe`.
    #: None, the default, costs nothing.
    observer: Observer | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(Observer))
    )


class Env:
    """Per-scheduler services handed to every handler."""

    def __init__(self, settings: Settings, components: ComponentLibrary) -> None:
        self.settings = settings
        self.components = components
        self.clock = settings.clock
        self.sandbox = (
            Sandbox(modules=settings.template_modules)
            if settings.template_modules
            else DEFAULT_SANDBOX
        )
        self.observer = settings.observer
        self.limiter = anyio.CapacityLimiter(settings.thread_pool_size)
        #: Component coroutines that ignored their cancellation, kept referenced until they end.
        self.detached: set[asyncio.Task[Any]] = set()

    def call(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Call user code: coroutines on the loop, plain functions on the thread pool.

        Whatever user code raises comes back as an Exception: a SystemExit,
        KeyboardInterrupt or a CancelledError that nobody asked for would
        otherwise end the scheduler (or the event loop) instead of the node.
        Only a cancellation of the caller propagates as such.

        Not a coroutine itself: a coroutine function is awaited through one
        ``_Inline`` (which also translates what it raises), without a frame of
        this method's in between, since this is every component call's path.
        """
        if inspect.iscoroutinefunction(fn):
            return _Inline(None, fn, self.settings.abandon_timeout, self.detached, args)
        return self._call_sync(fn, *args)

    async def _call_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            ok, result = await anyio.to_thread.run_sync(
                functools.partial(_capture_sync, fn, *args),
                limiter=self.limiter,
                abandon_on_cancel=True,
            )
            if not ok:
                raise result
            if inspect.isawaitable(result):
                result = await _Inline(result, fn, self.settings.abandon_timeout, self.detached)
            return result
        except Exception:
            raise
        except BaseException as exc:
            if is_cancellation(exc):
                raise
            raise UserCodeError(exc) from exc


class _Inline:
    """Awaits a user coroutine in the caller's task, exactly like ``await``, except
    that one which keeps going after its cancellation is left behind.

    A coroutine that swallows its cancellation would otherwise hold the caller
    (and with it the node's process, or the runtime's shutdown) forever: once
    it has ignored the caller's cancellation for ``abandon_timeout`` seconds, it
    goes on in a task of its own and the caller's cancellation proceeds. A task
    per call would do the same for every call, at a cost on every node.
    """

    __slots__ = ("args", "awaitable", "detached", "fn", "timeout")

    def __init__(
        self,
        awaitable: Any,
        fn: Callable[..., Any],
        timeout: float,
        detached: set[Any],
        args: tuple[Any, ...] | None = None,
    ) -> None:
        # Given ``args`` instead of an awaitable, it calls ``fn(*args)`` itself
        # and translates what the call raises, as Env.call does.
        self.awaitable = awaitable
        self.fn = fn
        self.timeout = timeout
        self.detached = detached
        self.args = args

    def __await__(self) -> Generator[Any, Any, Any]:
        try:
            awaitable = self.awaitable if self.args is None else self.fn(*self.args)
            coro = awaitable.__await__()
            deadline: float | None = None
            cancel: BaseException | None = None
            value: Any = None
            exc: BaseException | None = None
            while True:
                try:
                    yielded = coro.send(value) if exc is None else coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                if cancel is not None and deadline is not None and time.monotonic() >= deadline:
                    self._leave(coro, yielded)
                    raise cancel
                try:
                    value, exc = (yield yielded), None
                except BaseException as thrown:
                    if deadline is None and is_cancellation(thrown):
                        deadline = time.monotonic() + self.timeout
                        cancel = thrown
                    value, exc = None, thrown
        except Exception:
            raise
        except BaseException as raised:
            # As Env.call: only a cancellation of the caller propagates as such.
            if is_cancellation(raised):
                raise
            raise UserCodeError(raised) from raised

    def _leave(self, coro: Any, pending: Any) -> None:
        logger.warning(
            "%s ignored its cancellation for %s s; it is left running and its result "
            "will not be used",
            describe(self.fn),
            self.timeout,
        )
        task = asyncio.ensure_future(_run_detached(coro, pending))
        self.detached.add(task)
        task.add_done_callback(self.detached.discard)


async def _run_detached(coro: Any, pending: Any) -> None:
    try:
        await _Resumed(coro, pending)
    except BaseException:
        pass  # nobody wants the result of an abandoned call


class _Resumed:
    """Goes on driving a coroutine from where the caller left it, in another task."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Any, pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.pending
        while True:
            try:
                value, exc = (yield yielded), None
            except BaseException as thrown:
                value, exc = None, thrown
            try:
                yielded = coro.send(value) if exc is None else coro.throw(exc)
            except StopIteration:
                return None
            if exc is not None and is_cancellation(exc):
                # The loop is closing and would wait for this task forever.
                return None


def _capture_sync(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    # Raised on the loop's side as they are: an exception set on the future
    # would be thrown into the caller, which mangles a GeneratorExit.
    try:
        return True, fn(*args)
    except BaseException as exc:
        return False, exc


def describe(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None) or ""
    node_id = getattr(owner, "id", None)
    where = f" of node {node_id}" if isinstance(node_id, str) and node_id else ""
    return f"{module}.{name}{where}" if module else f"{name}{where}"


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is a cancellation of the current task, not one user code made up."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class UserCodeError(Exception):
    """User code raised a BaseException; it fails the node like any other exception."""

    def __init__(self, original: BaseException) -> None:
        text = str(original)
        name = type(original).__name__
        super().__init__(f"{name}: {text}" if text else name)
        self.original = original


def format_exc(exc: BaseException) -> str:
    if isinstance(exc, UserCodeError):
        exc = exc.original
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@attrs.define(slots=True)
class Outcome:
    """What a handler decided for its process."""

    kind: OutcomeKind
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

    def owns_state(self) -> bool:
        """False once an operator changed this attempt; unlike is_current, whatever its state."""
        st = self.run.states.get(self.node.id)
        return st is self.state and st.version == self.state.version and not self.run.revoked

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
        if self.run.timers is not None:
            self.run.timers.failed_by_itself(st)
        self.proc.status = P_SLEEPING
        self.run.put_process(self.proc)
        return SLEEP
