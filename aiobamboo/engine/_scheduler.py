"""The scheduler: owns running pipelines, drives them, answers the API.

Every mutation of a run happens on the event loop against its in-memory
state, so two operations on one node are always ordered: the second sees
what the first did and refuses if it no longer applies.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Literal, assert_never

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup

from .. import codec, states, validator
from ..component import ComponentLibrary
from ..exceptions import (
    InvalidOperationError,
    NotFoundError,
    StaleWriteError,
    StorageError,
    ValueCodecError,
)
from ..runtime import RUN_ACTIVE, RUN_REVOKED, CallbackRow, RunRow, RunSnapshot, Runtime
from ._coordination import OperationName, claim_loop, operation_name, renew_loop, send_command
from ._env import Env, Settings, is_cancellation, logger
from ._events import EventStream
from ._ops import Operations
from ._process import drive
from ._rollback import Rollbacks
from ._run import (
    CALLBACK,
    P_SLEEPING,
    Pickup,
    Process,
    ProcStatus,
    Reloading,
    Run,
    RunEvent,
    new_id,
)
from ._spec import PLAIN, ContextVar, RunSpec, context_key, parse_tree
from ._timer_wheel import TimerWheel
from ._watchdog import Watchdog

#: Seconds a recovery is remembered: a run that fails again within them waits twice as long.
RECOVERY_MEMORY = 60.0
#: The longest wait before a failed run is reloaded.
MAX_RECOVERY_DELAY = 30.0

#: Trees with more nodes than this are validated in a worker thread (about 20 ms of work).
THREAD_VALIDATION_NODES = 500
#: Runs ``run_pipeline`` builds and stores at once; the group commit writes them together.
START_SLOTS = 128


@attrs.define
class _Releases:
    """New runs released together: their starters wait for ``done``."""

    ids: list[str] = attrs.Factory(list)
    done: anyio.Event = attrs.Factory(anyio.Event)
    ok: bool = False


class _Slots:
    """At most ``total`` holders at once; the others wait in order of arrival.

    anyio's CapacityLimiter, without the pass of the event loop it takes on
    every acquire (a shielded checkpoint) that run_pipeline paid even with
    slots free. A caller cancelled while it waits leaves its place, or hands
    on the slot it was just given.
    """

    def __init__(self, total: int) -> None:
        self._free = total
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        # A caller cancelled already is refused here, as the limiter refused it.
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # given the slot, but not taking it
            else:
                waiter.cancel()  # skipped by _release from now on
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _prepare(
    pipeline: dict[str, Any],
    cycle_tolerate: bool,
    start_node_id: str | None,
    subprocess_context: dict[str, Any] | None,
) -> tuple[str, RunSpec]:
    """Validate and process the tree in place; its stored form and its parsed spec."""
    # The start node, if given, is checked on the same analysis of the tree.
    validator.validate_and_process_pipeline(
        pipeline, cycle_tolerate=cycle_tolerate, start_node_id=start_node_id
    )
    return codec.dumps(pipeline, "pipeline"), parse_tree(pipeline, subprocess_context)


#: Stored options of runs started with no data, context or start node, by
#: (cycle_tolerate, condition_rules): most runs, and the same text every time.
_BARE_OPTIONS: dict[tuple[bool, str], str] = {}


def _options_json(options: dict[str, Any]) -> str:
    """``codec.dumps(options)``, from a few texts made once for the common case."""
    rules = options["condition_rules"]
    cycle_tolerate = options["cycle_tolerate"]
    if (
        type(rules) is not str
        or type(cycle_tolerate) is not bool
        or options["start_node_id"] is not None
        or options["root_pipeline_data"]
        or options["root_pipeline_context"]
        or options["subprocess_context"]
    ):
        return codec.dumps(options, "options")
    key = (cycle_tolerate, rules)
    text = _BARE_OPTIONS.get(key)
    if text is None:
        text = codec.dumps(options, "options")
        if len(_BARE_OPTIONS) < 16:  # rule names are few; a caller's typo is not kept
            _BARE_OPTIONS[key] = text
    return text


def _all_node_ids(tree: dict[str, Any]) -> list[str]:
    ids = [tree["id"], tree["start_event"]["id"], tree["end_event"]["id"]]
    for node in (tree.get("activities") or {}).values():
        ids.append(node["id"])
        if node.get("type") == "SubProcess":
            ids.extend(_all_node_ids(node["pipeline"])[1:])
    ids.extend(tree.get("gateways") or {})
    return ids


class Scheduler(Operations, Rollbacks):
    """Executes pipelines stored in ``store``; one per runtime."""

    def __init__(
        self,
        store: Runtime,
        *,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        worker: bool = True,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.env = Env(self.settings, components or ComponentLibrary.default)
        self.clock = self.settings.clock
        self.worker = worker
        self.runs: dict[str, Run] = {}
        #: Runs loaded for a command: they do not park before the claim loop took it.
        self._awaiting_commands: set[str] = set()
        #: Runs an operation is claiming -> whether the claim loop claimed it meanwhile.
        self._claiming: dict[str, bool] = {}
        #: Runs leaving memory right now; an operation on one waits, then loads it again.
        self._parking: dict[str, anyio.Event] = {}
        #: Runs whose processes all wait where the run may park: root id -> since when.
        self._idle: dict[str, float] = {}
        self._parker_wake: anyio.Event | None = None
        self._node_roots: dict[str, str] = {}
        #: Runs that ended here lately, oldest first: root id -> (its final root
        #: state, when it ended by time.monotonic()). A caller that waits for a
        #: pipeline it just started usually asks once it has ended and left
        #: memory; the answer cannot change, so it needs no read.
        self._ended: dict[str, tuple[str, float]] = {}
        self._tg: TaskGroup | None = None
        self._loading: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        #: The task driving each run held here. Plain asyncio tasks rather than
        #: children of the task group: a run is started once per pipeline, and a
        #: task group's child costs three times as much to start; _serve cancels
        #: and awaits them as the task group would.
        self._supervisors: set[asyncio.Task[None]] = set()
        #: What a supervisor raised that it must not have: the scheduler stops on it.
        self._supervisor_error: BaseException | None = None
        self._host: asyncio.Task[None] | None = None
        #: Root ids of the pipelines run_pipeline is validating and storing right now.
        self._starting: set[str] = set()
        #: Bounds the runs being built and stored by run_pipeline at once: callers
        #: starting thousands of pipelines together wait here with nothing but
        #: their tree, instead of each holding a run in memory until its commit.
        self._start_slots = _Slots(START_SLOTS)
        #: New runs to give back to storage, gathering until their write starts.
        self._releasing: _Releases | None = None
        #: Set when room frees while the claim loop waits for it.
        self.room: anyio.Event | None = None
        self._watchdog: Watchdog | None = None
        #: Why the scheduler stopped on its own; the API refuses to work on it then.
        self.failure: BaseException | None = None
        self._failed: asyncio.Event | None = None
        #: Root id -> (when, back-off) of its last recovery after a failed commit.
        self._recoveries: dict[str, tuple[float, float]] = {}
        #: Fires the node timers (timeouts, retries, timer events) of runs held here.
        self.timer_wheel = TimerWheel(self)

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        """Start serving in a task of its own; returns once the scheduler runs.

        The serving task owns the scheduler's task group, so :meth:`stop` may be
        called from any task (a web framework's shutdown hook, a test fixture's
        teardown), not only the one that called :meth:`start`.
        """
        if self._host is not None:
            return
        started = anyio.Event()
        self.failure = None
        self._supervisor_error = None
        self._failed = asyncio.Event()
        # The only unstructured task of the engine: a service that outlives the
        # caller's task. Both database drivers are asyncio-only anyway.
        self._host = asyncio.get_running_loop().create_task(self._serve(started))
        waiter = asyncio.ensure_future(started.wait())
        done, _ = await asyncio.wait({self._host, waiter}, return_when=asyncio.FIRST_COMPLETED)
        host = self._host
        if host in done:
            waiter.cancel()
            self._host = None
            host.result()
        host.add_done_callback(self._host_done)
        if self.env.observer is not None:
            self.env.observer.attach(self)
        threshold = self.settings.loop_stall_warning
        if threshold is not None and threshold > 0:
            self._watchdog = Watchdog.start_for(asyncio.get_running_loop(), threshold)

    def _host_done(self, host: asyncio.Task[None]) -> None:
        if host is not self._host:
            return  # stopped on purpose
        exc = None if host.cancelled() else host.exception()
        self.failure = (
            exc or self._supervisor_error or RuntimeError("the scheduler stopped unexpectedly")
        )
        logger.critical(
            "the scheduler stopped; pipelines of this runtime no longer run",
            exc_info=exc,
        )
        if self._failed is not None:
            self._failed.set()

    def check_alive(self) -> None:
        """Refuse work once the scheduler stopped on its own: it would be stored, never run."""
        failure = self.failure
        if failure is not None:
            raise InvalidOperationError(
                f"the engine of this runtime stopped ({_causes(failure)}); "
                "close the runtime and open it again"
            )

    async def wait_failure(self) -> BaseException:
        """Return once the scheduler has stopped on its own (never when stopped on purpose)."""
        if self._failed is None:
            raise RuntimeError("the scheduler was not started")
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    async def _serve(self, started: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.worker:
                tg.start_soon(claim_loop, self)
                tg.start_soon(renew_loop, self)
                tg.start_soon(self.timer_wheel.loop)
                tg.start_soon(self.timer_wheel.save_loop)
                if self.settings.park_after is not None:
                    tg.start_soon(self._park_loop)
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                tg.cancel_scope.cancel()
                await self._stop_supervisors()

    @property
    def creating(self) -> set[str]:
        """Root ids that run_pipeline is starting right now.

        A run among them may be held and driven before its creation is stored:
        storage may not know it yet, so its lease is not its to renew.
        """
        return self._starting

    async def _stop_supervisors(self) -> None:
        """Cancel the runs' tasks and wait until they have ended, as a task group's children."""
        supervisors = list(self._supervisors)
        for task in supervisors:
            task.cancel()
        if supervisors:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(supervisors)

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        self._supervisors.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._supervisor_error is None:
            # Raised past _supervise, which catches all but cancellations: as in a
            # task group, the scheduler stops on it rather than drive on without the run.
            self._supervisor_error = exc
            if self._host is not None:
                self._host.cancel()

    async def stop(self) -> None:
        """Stop every run here and hand them back to storage for the next worker."""
        host, self._host = self._host, None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.release()
        if host is None:
            return
        held = [*self.runs, *self._loading, *self._parking]
        host.cancel()
        try:
            await host
        except asyncio.CancelledError:
            pass
        except Exception:
            pass  # the scheduler had stopped on its own, and said so then
        observer = self.env.observer
        if observer is not None:
            for run in self.runs.values():
                observer.run_left(run, "stopped")
            observer.detach(self)
        self.runs.clear()
        self._node_roots.clear()
        self._ended.clear()
        self._scopes.clear()
        for loading in self._loading.values():
            loading.set()
        self._loading.clear()
        for parking in self._parking.values():
            parking.set()
        self._parking.clear()
        self._idle.clear()
        self._awaiting_commands.clear()
        if held:
            try:
                await self.store.release_runs(held)
            except Exception:
                logger.exception("releasing runs failed; their leases will expire")

    def subscribe(
        self, root_id: str | None = None, after: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[RunEvent]]:
        """Events committed after the event ``after`` (None: from now on), by any process."""
        return self._subscribe(root_id, after)

    @asynccontextmanager
    async def _subscribe(
        self, root_id: str | None, after: int | None
    ) -> AsyncIterator[AsyncIterator[RunEvent]]:
        self.check_alive()
        cursor = after if after is not None else await self.store.last_event_id()
        yield EventStream(self.store, root_id, cursor, self.settings.poll_interval)

    # -- runs ----------------------------------------------------------------
    def _build(
        self, tree: dict[str, Any], options: dict[str, Any], spec: RunSpec | None = None
    ) -> Run:
        if spec is None:
            spec = parse_tree(tree, options.get("subprocess_context"))
        run = Run(self.store, spec, options.get("root_pipeline_data") or {}, self.clock)
        # Runs stored before the option existed evaluate as they always did.
        run.condition_rules = options.get("condition_rules") or "standard"
        root_ctx = run.contexts.setdefault(spec.root_id, {})
        for key, value in (options.get("root_pipeline_context") or {}).items():
            root_ctx[context_key(key)] = ContextVar(PLAIN, value)
        run.on_broken = self._recover
        run.on_idle = self._note_idle
        run.observer = self.env.observer
        run.observed = options.get("observe")
        return run

    def _register(self, run: Run, how: Literal["started", "loaded"] = "loaded") -> None:
        self.runs[run.root_id] = run
        observer = self.env.observer
        if observer is not None:
            observer.run_held(run, how)
        for node_id in run.spec.nodes:
            self._node_roots[node_id] = run.root_id
        for pipeline_id in run.spec.pipelines:
            self._node_roots[pipeline_id] = run.root_id
        if self._tg is not None and self.worker:
            scope = self._scopes[run.root_id] = anyio.CancelScope()
            task = asyncio.get_running_loop().create_task(self._supervise(run, scope))
            self._supervisors.add(task)
            task.add_done_callback(self._supervisor_done)
            self.timer_wheel.adopt(run)

    def drop(self, root_id: str, how: Literal["parked", "dropped"] = "dropped") -> None:
        """Stop driving a run (its lease was lost): its coroutines are cancelled."""
        run = self.runs.get(root_id)
        if run is not None:
            self._unregister(run, how)
        scope = self._scopes.pop(root_id, None)
        if scope is not None:
            scope.cancel()

    def _unregister(self, run: Run, how: Literal["ended", "parked", "dropped"] = "dropped") -> None:
        self._idle.pop(run.root_id, None)
        self._awaiting_commands.discard(run.root_id)
        if self.runs.get(run.root_id) is run:
            del self.runs[run.root_id]
            observer = self.env.observer
            if observer is not None:
                observer.run_left(run, how)
            for node_id in run.spec.nodes:
                self._node_roots.pop(node_id, None)
            for pipeline_id in run.spec.pipelines:
                self._node_roots.pop(pipeline_id, None)
            self._room_freed()

    def _room_freed(self) -> None:
        """Wake the claim loop if it waits for room and there is some now."""
        if self.room is not None and self.held < self.settings.concurrency:
            self.room.set()

    def at_rest(self) -> bool:
        """Whether every run held here waits on the outside world (or none is held).

        A callback, an operator or a timer moves them next: nothing of them is
        in motion now.
        """
        if self._loading or self._parking:
            return False
        return all(run.wake_time() is not None for run in self.runs.values())

    @property
    def held(self) -> int:
        """Runs held here: driven, being loaded, or leaving memory."""
        return len(self.runs) + len(self._loading) + len(self._parking)

    @property
    def task_group(self) -> TaskGroup | None:
        """The serving task group, for work that outlives its caller; None when stopped."""
        return self._tg

    def load_soon(self, root_ids: Sequence[str], *, commands: bool = False) -> None:
        """Load claimed runs in the background, all with one read of storage.

        ``commands``: they were woken by a command (or a timer); they do not
        park again before the claim loop has taken the commands waiting for them.
        """
        todo: list[str] = []
        for root_id in root_ids:
            if commands:
                self._awaiting_commands.add(root_id)
            if root_id in self._claiming:
                self._claiming[root_id] = True  # that caller loads it
                continue
            if self._tg is None or root_id in self.runs or root_id in self._loading:
                continue
            # Registered now, so that an operation arriving meanwhile waits for it.
            self._loading[root_id] = anyio.Event()
            todo.append(root_id)
        if todo and self._tg is not None:
            self._tg.start_soon(self._load_batch, todo)

    async def _load_batch(self, root_ids: list[str]) -> None:
        """Load runs registered in ``_loading``; each ends loaded, or not, alone."""
        try:
            snaps = await self.store.load_runs(root_ids)
        except Exception:
            logger.exception(
                "loading %d claimed runs failed; their leases will expire", len(root_ids)
            )
            snaps = {}
        for i, root_id in enumerate(root_ids):
            if i:
                # A run costs a few hundred microseconds to rebuild: a batch of them
                # in one go would hold up every other task (callbacks being answered,
                # commits landing) for tens of milliseconds.
                await anyio.lowlevel.checkpoint()
            try:
                snap = snaps.get(root_id)
                if snap is not None:
                    self._install(snap)
            except Exception:
                logger.exception("loading claimed run %s failed; its lease will expire", root_id)
            finally:
                self._loaded(root_id)

    async def loaded(self, root_ids: Sequence[str]) -> None:
        """Wait until the loads of ``root_ids`` started here have ended (loaded or not)."""
        for root_id in root_ids:
            loading = self._loading.get(root_id)
            if loading is not None:
                await loading.wait()

    def commands_taken(self, root_ids: Sequence[str]) -> None:
        """The claim loop took the pending commands of ``root_ids``: they may park again."""
        for root_id in root_ids:
            if root_id in self._awaiting_commands:
                self._awaiting_commands.discard(root_id)
                run = self.runs.get(root_id)
                if run is not None and run.idle:
                    self._note_idle(run)

    async def _load_now(self, root_id: str) -> Run | None:
        """The load itself; the caller registered ``root_id`` in ``_loading``."""
        try:
            snap = await self.store.load_run(root_id)
            return None if snap is None else self._install(snap)
        finally:
            self._loaded(root_id)

    def _install(self, snap: RunSnapshot) -> Run | None:
        """Rebuild an active run from its snapshot and drive it; None for an ended run."""
        if snap.run.status != RUN_ACTIVE:
            return None
        run = self._build(codec.loads(snap.run.tree_json), codec.loads(snap.run.options_json))
        run.restore(snap)
        self._register(run)
        return run

    def _loaded(self, root_id: str) -> None:
        if root_id not in self.runs:
            self._awaiting_commands.discard(root_id)
        self._loading.pop(root_id).set()

    async def _supervise(self, run: Run, scope: anyio.CancelScope) -> None:
        """Drive a run; after a storage failure, reload it from storage and go on."""
        with scope:
            try:
                root = next((p for p in run.processes.values() if p.parent_id is None), None)
                if root is not None:
                    await drive(self.env, run, root)
                await run.checkpoint("settle")
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                if run.broken is None and not isinstance(exc, StaleWriteError | StorageError):
                    # Anything else (even a SystemExit that got this far) costs this
                    # run a reload, never the scheduler and every other run with it.
                    logger.exception("run %s stopped; reloading it from storage", run.root_id)
                self._recover(run, exc)
                return
        if self._scopes.get(run.root_id) is scope:
            del self._scopes[run.root_id]
        if run.finished or run.revoked:
            self._unregister(run, "ended")
            self._recoveries.pop(run.root_id, None)
            self._note_ended(run)

    def _note_ended(self, run: Run) -> None:
        root = run.states.get(run.root_id)
        if root is None or root.state not in (states.FINISHED, states.REVOKED):
            return
        if not run.settled or run.broken is not None:
            return  # its end is not known to be stored
        ended = self._ended
        ended[run.root_id] = (str(root.state), time.monotonic())
        while len(ended) > ENDED_MEMO:
            del ended[next(iter(ended))]

    def ended_state(self, root_id: str) -> str | None:
        """The final state of a pipeline that ended here in the last ``ENDED_MEMO_SECONDS``.

        Past that, storage answers: the pipeline may have been purged since.
        """
        found = self._ended.get(root_id)
        if found is None:
            return None
        if time.monotonic() - found[1] > ENDED_MEMO_SECONDS:
            del self._ended[root_id]
            return None
        return found[0]

    def forget_ended(self, root_ids: Sequence[str]) -> None:
        """The pipelines were purged: storage answers for them again."""
        for root_id in root_ids:
            self._ended.pop(root_id, None)

    def _recover(self, run: Run, exc: BaseException) -> None:
        """Drop a run whose memory may differ from storage; reload it unless it was taken over.

        Called once a commit of the run failed (from the failed checkpoint, in
        whichever task made it), or when its supervisor stopped on an error. The
        reload is a task of the scheduler's own, so cancelling the run's
        coroutines (the supervisor's among them) does not cancel it, and
        operations arriving meanwhile wait for it instead of finding no run.
        """
        root_id = run.root_id
        if self.runs.get(root_id) is not run:
            return  # already dropped (lease lost, stopped, or recovering)
        self.drop(root_id)
        if isinstance(exc, StaleWriteError):
            logger.warning("run %s was taken over by another worker", root_id)
            return
        self._reload_soon(root_id)

    def _reload_soon(self, root_id: str) -> None:
        """Reload a run this scheduler owns in storage, after a back-off."""
        if self._tg is None or root_id in self.runs or root_id in self._loading:
            return
        self._loading[root_id] = anyio.Event()
        self._tg.start_soon(self._reload, root_id, self._backoff(root_id))

    def _backoff(self, root_id: str) -> float:
        """``recovery_delay``, doubled for each recovery of the run in the last minute.

        Storage that keeps refusing (a full disk, a read-only file) would otherwise
        have the run reloaded, and its running component restarted, twice a second.
        """
        now = time.monotonic()
        last = self._recoveries.get(root_id)
        delay = self.settings.recovery_delay
        if last is not None and now - last[0] < RECOVERY_MEMORY:
            delay = min(last[1] * 2, MAX_RECOVERY_DELAY)
        self._recoveries[root_id] = (now, delay)
        return delay

    async def _reload(self, root_id: str, delay: float) -> None:
        """Load ``root_id`` (registered in ``_loading``), retrying while storage fails."""
        while True:
            await anyio.sleep(delay)
            try:
                await self._load_now(root_id)
                return
            except Exception:
                logger.exception("reloading run %s failed; retrying", root_id)
                self._loading[root_id] = anyio.Event()
                delay = min(delay * 2, MAX_RECOVERY_DELAY)

    # -- parking ---------------------------------------------------------------
    def _note_idle(self, run: Run) -> None:
        """A process of ``run`` waits where the run may park: look at it after ``park_after``."""
        if self.settings.park_after is None or run.root_id in self._idle:
            return
        self._idle[run.root_id] = time.monotonic()
        if self._parker_wake is not None:
            self._parker_wake.set()

    def wake_parker(self) -> None:
        """Have the parker look at the idle runs now (the claim loop waits for room)."""
        if self._parker_wake is not None:
            self._parker_wake.set()

    async def _park_loop(self) -> None:
        """Park the runs that have waited ``park_after`` seconds on the outside world.

        While the claim loop waits for room (this worker holds
        ``Settings.concurrency`` runs), idle runs park at once: a run that only
        waits then gives its slot to one that has work to do.
        """
        assert self.settings.park_after is not None
        while True:
            self._parker_wake = anyio.Event()
            park_after = 0.0 if self.room is not None else self.settings.park_after
            now = time.monotonic()
            next_look = math.inf
            # Oldest first (insertion order): stop at the first that is not due yet.
            leaving: list[str] = []
            for root_id, since in list(self._idle.items()):
                if since + park_after > now:
                    next_look = since + park_after
                    break
                del self._idle[root_id]
                if self._try_park(root_id):
                    leaving.append(root_id)
            if leaving and self._tg is not None:
                # One write parks them all: a commit per run would cost more than the run.
                self._tg.start_soon(self._park, leaving)
            with anyio.move_on_after(next_look - now):
                await self._parker_wake.wait()

    def _try_park(self, root_id: str) -> bool:
        """Take the run out of memory if nothing of it is in motion; True if it did.

        The caller then stores it as parked (:meth:`_park`). Checked and done
        with no ``await`` in between: nothing can start moving
        the run between the check and its coroutines' cancellation, which find
        every process in a wait that holds nothing (the run is settled).
        """
        run = self.runs.get(root_id)
        if run is None or self._tg is None or root_id in self._loading:
            return False
        if root_id in self._awaiting_commands:
            return False  # looked at again once its commands are taken
        wake = run.wake_time()
        if wake is None:
            return False
        park_after = self.settings.park_after or 0.0
        if wake - self.clock.now() <= park_after:
            return False  # a timer fires soon: cheaper to wait for it here
        self.drop(root_id, "parked")
        run.notify_changed()  # wait_pipeline callers look again, at storage
        self._parking[root_id] = anyio.Event()
        return True

    async def _park(self, root_ids: list[str]) -> None:
        """Store the runs of ``root_ids`` (registered in ``_parking``) as parked."""
        parked: set[str] = set()
        try:
            parked = set(await self.store.park_runs(root_ids))
        except Exception:
            logger.exception("parking %d runs failed; keeping them in memory", len(root_ids))
        finally:
            for root_id in root_ids:
                event = self._parking.pop(root_id, None)
                if event is not None:
                    event.set()
            self._room_freed()
        for root_id in root_ids:
            if root_id in parked:
                continue
            # A command came for it meanwhile (or storage failed): it stays ours,
            # so it is loaded again at once and the command applied.
            self._recoveries.pop(root_id, None)
            if self._tg is not None and root_id not in self.runs and root_id not in self._loading:
                self._awaiting_commands.add(root_id)
                self._loading[root_id] = anyio.Event()
                self._tg.start_soon(self._reload, root_id, 0.0)

    async def _hold(self, root: str) -> Run | None:
        """The run in memory here: claimed and loaded if nobody holds it (parked, released).

        Concurrent callers share one claim and one load; None when another
        process holds the run, this worker holds ``Settings.concurrency`` runs
        already, or this is a client.
        """
        await self._unparked(root)
        if root in self.runs or not self.worker or self._tg is None:
            return self.runs.get(root)
        if self.held >= self.settings.concurrency:
            # No room here: the operation travels as a command, and the run is
            # loaded (in this worker or another) once a worker has room for it.
            return None
        loading = self._loading[root] = anyio.Event()
        self._claiming[root] = False
        ours = False
        try:
            ours = bool(await self.store.claim_runs(1, [root]))
        finally:
            # The claim loop may have claimed it first: then it is ours all the same.
            ours = self._claiming.pop(root, False) or ours
            if not ours:
                del self._loading[root]
                loading.set()
        if not ours:
            # This scheduler's own claim loop may hold it, its load just registered.
            await self._unparked(root)
            return self.runs.get(root)
        return await self._load_now(root)

    async def _unparked(self, root: str) -> None:
        """Wait while ``root`` is leaving memory or being loaded into it.

        Until neither: while one load ends, another may begin (the claim loop's,
        for a run a callback just unparked), and this caller must not start its own.
        """
        while True:
            parking = self._parking.get(root)
            if parking is not None:
                await parking.wait()
                continue
            loading = self._loading.get(root)
            if loading is None:
                return
            await loading.wait()

    async def run_pipeline(
        self,
        pipeline: dict[str, Any],
        *,
        root_pipeline_data: dict[str, Any] | None = None,
        root_pipeline_context: dict[str, Any] | None = None,
        subprocess_context: dict[str, Any] | None = None,
        cycle_tolerate: bool = False,
        start_node_id: str | None = None,
        condition_rules: str | None = None,
    ) -> str:
        self.check_alive()
        options = {
            "root_pipeline_data": root_pipeline_data or {},
            "root_pipeline_context": root_pipeline_context or {},
            "subprocess_context": subprocess_context or {},
            "cycle_tolerate": cycle_tolerate,
            "start_node_id": start_node_id,
            # Stored with the run, so every worker that loads it evaluates alike.
            "condition_rules": condition_rules or self.settings.condition_rules,
        }
        # Encoded before the tree is validated (which changes it): a value that
        # cannot be stored is refused with the caller's tree untouched.
        options_json = _options_json(options)
        claimed = pipeline.get("id")
        if isinstance(claimed, str):
            if claimed in self.runs:
                raise InvalidOperationError(f"pipeline {claimed:.100} already exists")
            if claimed in self._starting:
                # Also keeps two threads from processing one tree dict at once.
                raise InvalidOperationError(f"pipeline {claimed:.100} is being started already")
            self._starting.add(claimed)
        try:
            async with self._start_slots:
                return await self._start(pipeline, options, options_json)
        finally:
            if isinstance(claimed, str):
                self._starting.discard(claimed)

    async def _start(
        self, pipeline: dict[str, Any], options: dict[str, Any], options_json: str
    ) -> str:
        """Validate, build and store a new run; drive it if this worker has room for it."""
        start_node_id = options["start_node_id"]
        subprocess_context = options["subprocess_context"]
        prepare = (pipeline, options["cycle_tolerate"], start_node_id, subprocess_context)
        if validator.count_nodes(pipeline) > THREAD_VALIDATION_NODES:
            # Validation costs tens of microseconds a node: a large tree is
            # validated, encoded and parsed in a worker thread, so that the event
            # loop keeps serving every other pipeline meanwhile.
            tree_json, spec = await anyio.to_thread.run_sync(_prepare, *prepare)
        else:
            tree_json, spec = _prepare(*prepare)
        root_id: str = pipeline["id"]
        observer = self.env.observer
        if observer is not None:
            stored = observer.pipeline_starting(root_id)
            if stored:
                options["observe"] = stored
                options_json = codec.dumps(options, "options")
        row = RunRow(
            root_id=root_id,
            tree_json=tree_json,
            options_json=options_json,
            status=RUN_ACTIVE,
            created_time=time.time(),
        )
        if root_id in self.runs:
            raise InvalidOperationError(f"pipeline {root_id} already exists")
        run = self._build(pipeline, options, spec)
        run.batch.new_run = row
        run.batch.new_nodes = _all_node_ids(pipeline)
        root_state = run.new_state(root_id, "", states.RUNNING)
        root_state.started_time = time.time()
        run.put_state(root_state)
        run.emit_state(root_state)
        first = start_node_id or run.spec.root.start_id
        run.put_process(
            Process(
                id=new_id("c"),
                parent_id=None,
                current_node_id=first,
                destination_id=None,
                stack=[root_id],
            )
        )
        if (
            self.worker
            and observer is None
            and self._tg is not None
            and self.held < self.settings.concurrency
            and not any(map(self._node_roots.__contains__, run.batch.new_nodes))
        ):
            await self._start_driven(run)
            return root_id
        try:
            await run.checkpoint("run-created")
        except StorageError:
            # The run may have been stored all the same (the answer was lost): this
            # worker owns it then, and nobody else would ever claim it.
            if self.worker:
                self._reload_soon(root_id)
            raise
        if observer is not None:
            observer.pipeline_started(run)
        # A full worker gives the run back for the claim loop; if storage refuses
        # that, it drives the run all the same rather than hold it driven by nobody.
        if self.worker and (
            self.held < self.settings.concurrency or not await self._give_back(root_id)
        ):
            self._register(run, "started")
        return root_id

    async def _start_driven(self, run: Run) -> None:
        """Drive a new run at once; return once its creation is stored.

        The run's first steps (the start event, the next node's RUNNING state)
        are recorded before its creation is written, and go out with it: a
        commit less for every pipeline started. The durability contract holds
        as before, since each step waits for its own commit; this caller waits
        only for the creation's.

        Not with an observer, which is told of the start before the run is held.
        Nor when a node id of the run is held here already: storage refuses
        that run, and it must not have taken the other run's nodes meanwhile.
        """
        created = run.recorded
        # Until the creation is stored, storage refusing the run is no reason to reload it.
        run.on_broken = self._creation_failed
        self._register(run, "started")
        try:
            # The run's task takes its first steps, up to their commit, before this looks.
            await asyncio.sleep(0)
            await run.checkpoint("run-created", upto=created)
        except Reloading:
            # Its commit failed in the run's task: the caller gets that failure.
            broken = run.broken
            if isinstance(broken, Exception) and not isinstance(broken, Reloading):
                raise broken from broken.__cause__  # as it was raised there
            raise
        run.on_broken = self._recover

    def _creation_failed(self, run: Run, exc: BaseException) -> None:
        """A commit of a run failed before its creation was known to be stored."""
        if isinstance(exc, InvalidOperationError):
            # Storage refused the new run whole (its id or a node id is taken):
            # nothing of it was stored, and the id may be another run's.
            if self.runs.get(run.root_id) is run:
                self.drop(run.root_id)
            return
        self._recover(run, exc)

    async def _give_back(self, root_id: str) -> bool:
        """Release a run just created, for a worker with room to claim; False if that failed.

        Runs started together are released with one write.
        """
        if self._releasing is None:
            if self._tg is None:
                return False
            self._releasing = _Releases()
            self._tg.start_soon(self._flush_releases, self._releasing)
        releases = self._releasing
        releases.ids.append(root_id)
        await releases.done.wait()
        return releases.ok

    async def _flush_releases(self, releases: _Releases) -> None:
        self._releasing = None
        try:
            await self.store.release_runs(releases.ids)
            releases.ok = True
        except Exception:
            logger.exception("giving %d new runs back to storage failed", len(releases.ids))
        finally:
            releases.done.set()

    # -- lookups ---------------------------------------------------------------
    async def root_of(self, node_id: str) -> str:
        root = self._node_roots.get(node_id)
        if root is None and self.ended_state(node_id) is not None:
            return node_id
        if root is None:
            root = await self.store.get_node_root(node_id)
        if root is None:
            raise NotFoundError(f"node({node_id}) does not exist")
        return root

    async def active_run(self, node_id: str) -> Run:
        """The run holding ``node_id``, held here; refuses ended and unknown runs."""
        self.check_alive()
        root = await self.root_of(node_id)
        # Claimed, reloading after a failed commit, parking or parked: in memory after this.
        run = await self._hold(root)
        if run is None:
            await self._check_active(root, node_id)
            raise InvalidOperationError(f"pipeline {root} is held by another worker")
        # An ended run may linger in memory for a moment: refuse as if it were gone.
        if run.revoked:
            raise InvalidOperationError(f"pipeline {root} has been revoked")
        if run.finished:
            raise InvalidOperationError(f"pipeline {root} has already finished")
        return run

    async def _check_active(self, root: str, node_id: str) -> None:
        row = await self.store.get_run(root)
        if row is None:
            raise NotFoundError(f"node({node_id}) does not exist")
        if row.status == RUN_REVOKED:
            raise InvalidOperationError(f"pipeline {root} has been revoked")
        if row.status != RUN_ACTIVE:
            raise InvalidOperationError(f"pipeline {root} has already finished")

    async def operate(self, name: str, node_id: str, *args: Any) -> None:
        """Apply an operator action here if this scheduler holds the run, else at its owner."""
        self.check_alive()
        op = operation_name(name)
        # Stored for a parked run, a callback waits for a claim loop that claims
        # woken runs; a worker that claims none loads the run itself, below.
        parked = op == "callback" and self.settings.claim_runs
        to_node = getattr(self.store, "deliver_callback_to_node", None)
        row = None
        if parked and to_node is not None and node_id not in self._node_roots:
            # Not in memory here (a client holds none): the store finds the run and
            # delivers in one round trip if it is parked. Storage checks that in the
            # same transaction: a run held by a worker, this one's loads included
            # (their claim is committed first), is refused there and the callback
            # goes the long way below.
            try:
                row = self._parked_callback("", node_id, *args)
            except ValueCodecError:
                pass  # raised the usual way, once the node is known to exist
        if row is not None and to_node is not None:
            found, stored = await to_node(row)
            if stored:
                return
            root = found or await self.root_of(node_id)
        else:
            root = await self.root_of(node_id)
            if parked and await self._deliver_parked(root, node_id, *args):
                return
        if await self._hold(root) is None:
            await self._check_active(root, node_id)
            observer = self.env.observer
            if observer is None:
                await send_command(self, root, op, [node_id, *args])
                return
            started, applied = time.perf_counter(), False
            try:
                await send_command(self, root, op, [node_id, *args])
                applied = True
            finally:
                observer.command_answered(op, time.perf_counter() - started, applied)
        else:
            await self.apply_operation(op, [node_id, *args])

    async def _deliver_parked(self, root: str, node_id: str, version: str, data: Any) -> bool:
        """Store a callback to a parked run without loading it here; False to go the long way.

        The store checks, in one transaction, every condition under which the
        run in memory would accept it (a single-callback schedule of that
        version waiting, nothing accepted yet), and hands the run to whichever
        worker claims it first; its restored process takes the callback. A
        callback for a multi-callback or polling schedule, or any refusal,
        goes through the run itself, for its exact answer.
        """
        if root in self.runs or root in self._loading or root in self._parking:
            return False
        row = self._parked_callback(root, node_id, version, data)
        return row is not None and await self.store.deliver_callback(row)

    @staticmethod
    def _parked_callback(root: str, node_id: str, version: Any, data: Any) -> CallbackRow | None:
        if not isinstance(version, str):
            return None  # refused with the reason by the run itself
        return CallbackRow(
            id=new_id("b"),
            root_id=root,
            node_id=node_id,
            version=version,
            data_json=codec.dumps(data, "callback data"),
            consumed=False,
            created_time=time.time(),
        )

    async def apply_operation(self, op: OperationName, args: Sequence[Any]) -> None:
        """Apply an operator action to a run held here (the arguments as the API got them).

        The run is pinned meanwhile: it does not park under an operation.
        """
        run = None
        if args and isinstance(args[0], str):
            root = self._node_roots.get(args[0])
            if root is None:
                try:
                    root = await self.root_of(args[0])
                except NotFoundError:
                    pass  # the operation refuses it with its own words
            if root is not None:
                # Loaded (if parked) before it is pinned: an operation that loads
                # the run itself would run unpinned, and the run could park under it.
                run = await self._hold(root)
        if run is None:
            await OPERATION_TABLE[op](self, *args)
            return
        run.pins += 1
        try:
            await OPERATION_TABLE[op](self, *args)
        except Reloading:
            # A commit of the run failed under the operation before its own changes
            # went out: they are gone with the run's memory. Once more, reloaded.
            await self._unparked(run.root_id)
            await OPERATION_TABLE[op](self, *args)
        finally:
            run.pins -= 1
            if not run.pins and run.idle and self.runs.get(run.root_id) is run:
                self._note_idle(run)

    # -- callbacks ---------------------------------------------------------------
    async def callback(self, node_id: str, version: str, data: Any) -> None:
        run = await self.active_run(node_id)
        if run.process_at(node_id, P_SLEEPING) is None:
            raise InvalidOperationError(
                f"can not find sleep process with current node id: {node_id}"
            )
        key = (node_id, version)
        sched = run.schedules.get(key)
        if sched is None:
            raise NotFoundError(f"schedule of node {node_id} with version {version} does not exist")
        st = run.states[node_id]
        if st.version != version:
            if not sched.expired:
                sched.expired = True
                run.put_schedule(sched)
                await run.checkpoint("callback")
            raise InvalidOperationError(f"node version {version} not exist")
        if sched.finished:
            raise InvalidOperationError("schedule is already finished")
        if sched.expired:
            raise InvalidOperationError("schedule is already expired")
        if sched.type == CALLBACK and sched.callback_accepted:
            # A single-callback node takes one: a second would be acknowledged, then dropped.
            raise InvalidOperationError(
                f"a callback for node {node_id} version {version} was already accepted"
            )
        if st.state != states.RUNNING:
            # The original acknowledges it and then drops it (the schedule expires on
            # the next trigger): a callback accepted here is always delivered.
            raise InvalidOperationError(
                f"node {node_id} is {st.state}: it no longer waits for a callback"
            )
        data_json = codec.dumps(data, "callback data")
        row = CallbackRow(
            id=new_id("b"),
            root_id=run.root_id,
            node_id=node_id,
            version=version,
            data_json=data_json,
            consumed=False,
            created_time=time.time(),
        )
        run.put_callback(row)
        sched.callback_accepted = True
        try:
            await run.checkpoint("callback")
        except BaseException:
            sched.callback_accepted = False
            raise
        # While it was being stored, the schedule may have taken the callback that
        # ends it (and the run may have ended), or an operator failed the node.
        current = run.states.get(node_id)
        if (
            sched.finished
            or sched.expired
            or run.revoked
            or run.finished
            or current is None
            or (current.version, current.state) != (version, states.RUNNING)
        ):
            run.put_callback(attrs.evolve(row, consumed=True))
            try:
                await run.checkpoint("callback")
            except Reloading as exc:
                # The callback itself is stored: applying it again would store it twice.
                raise StorageError(str(exc)) from exc
            if run.revoked:
                raise InvalidOperationError(
                    f"pipeline {run.root_id} has been revoked before this callback was taken"
                )
            raise InvalidOperationError(
                f"node {node_id} version {version} stopped waiting for callbacks "
                "before this one was taken"
            )
        if sched.type == CALLBACK or self.runs.get(run.root_id) is not run:
            self._enqueue_callback(run, row)
            return
        # A multi-callback or polling schedule takes callbacks one at a time. Answer
        # once it takes this one, in order behind those queued before it, or refuse
        # it if the schedule ends first: acknowledged and then dropped would leave
        # the sender believing it was delivered.
        pickup = run.pickups[row.id] = Pickup()
        try:
            self._enqueue_callback(run, row)
            while not pickup.event.is_set():
                with anyio.move_on_after(1.0):
                    await pickup.event.wait()
                if not pickup.event.is_set() and self.runs.get(run.root_id) is not run:
                    # The run left this scheduler (stopped, or lease lost) with the callback
                    # stored and queued: its next owner delivers it in order.
                    return
        finally:
            run.pickups.pop(row.id, None)
        if pickup.refusal is not None:
            raise InvalidOperationError(pickup.refusal)

    @staticmethod
    def _enqueue_callback(run: Run, row: CallbackRow) -> None:
        key = (row.node_id, row.version)
        run.callbacks.setdefault(key, deque()).append(row)
        waiter = run.waiters.get(key)
        if waiter is not None:
            waiter.event.set()

    # -- waiting ---------------------------------------------------------------
    async def wait_pipeline(
        self,
        root_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the API contract names this parameter
    ) -> tuple[str, str]:
        """Wait until the pipeline needs an operator or has ended: (state, message)."""
        self.check_alive()
        ended = self.ended_state(root_id)
        if ended is not None:
            return ended, f"pipeline {root_id} is {ended}"
        with anyio.fail_after(timeout):
            cursor: int | None = None
            while True:
                await self._unparked(root_id)  # claimed, reloading, or parking
                run = self.runs.get(root_id)
                if run is None:
                    # Parked, or held by another process: storage tells.
                    found = await self._wait_stored(root_id)
                    if found is not None:
                        return found
                    if cursor is None:
                        # Then look again: a change committed between the first look and
                        # this cursor is seen by the second look, later ones by the cursor.
                        cursor = await self.store.last_event_id()
                        continue
                    cursor = await self._next_events(root_id, cursor)
                    continue
                result = quiescence(run)
                if result is not None and run.settled:
                    return result
                if result is not None and run.pending and run.broken is None:
                    try:
                        await run.checkpoint("settle")
                    except StorageError:
                        pass  # the run is reloaded from storage; wait for that
                    continue
                await run.changed.wait()

    async def _next_events(self, root_id: str, cursor: int) -> int:
        """Wait until events of ``root_id`` commit after ``cursor`` (at most a second)."""
        deadline = time.monotonic() + 1.0
        while True:
            seen = self.store.events_seen
            rows = await self.store.read_events(cursor, root_id, 1000)
            if rows:
                return rows[-1].id
            left = deadline - time.monotonic()
            if left <= 0 or root_id in self.runs or root_id in self._loading:
                return cursor
            await self.store.wait_for_events(seen, min(left, self.settings.poll_interval))

    async def _wait_stored(self, root_id: str) -> tuple[str, str] | None:
        """The resting state of a run that is not in this process's memory, if it rests."""
        # The root's state first: a run that has ended (the usual case here)
        # then costs one read. Its run row is written in the same commit.
        state = await self.store.get_state(root_id)
        if state is not None and state.root_id != root_id:
            state = None  # a node's id, not a pipeline's: found out by the run's row below
        if state is not None and state.state in (states.FINISHED, states.REVOKED, states.SUSPENDED):
            return state.state, f"pipeline {root_id} is {state.state}"
        row = await self.store.get_run(root_id)
        if row is None:
            raise NotFoundError(f"node({root_id}) does not exist")
        if row.status == RUN_ACTIVE:
            snap = await self.store.load_run(root_id)
            if snap is not None:
                run = self._build(
                    codec.loads(snap.run.tree_json), codec.loads(snap.run.options_json)
                )
                run.restore(snap)
                return quiescence(run)
        return None


#: How many ended runs a scheduler remembers the final state of, and for how long.
ENDED_MEMO = 10_000
ENDED_MEMO_SECONDS = 60.0


#: Every operator action by name: local calls and commands from other processes
#: dispatch through it (a test checks that it covers every OperationName).
OPERATION_TABLE: Final[Mapping[OperationName, Callable[..., Awaitable[None]]]] = {
    "pause_pipeline": Scheduler.pause_pipeline,
    "resume_pipeline": Scheduler.resume_pipeline,
    "revoke_pipeline": Scheduler.revoke_pipeline,
    "pause_node_appoint": Scheduler.pause_node_appoint,
    "resume_node_appoint": Scheduler.resume_node_appoint,
    "retry_node": Scheduler.retry_node,
    "retry_subprocess": Scheduler.retry_subprocess,
    "skip_node": Scheduler.skip_node,
    "skip_exclusive_gateway": Scheduler.skip_exclusive_gateway,
    "skip_conditional_parallel_gateway": Scheduler.skip_conditional_parallel_gateway,
    "forced_fail_activity": Scheduler.forced_fail_activity,
    "callback": Scheduler.callback,
    "update_context_values": Scheduler.update_context_values,
    "rollback": Scheduler.rollback,
    "retry_rollback_failed_node": Scheduler.retry_rollback_failed_node,
    "reserve_rollback": Scheduler.reserve_rollback,
    "cancel_reserved_rollback": Scheduler.cancel_reserved_rollback,
}


def _causes(exc: BaseException) -> str:
    """The exceptions inside task-group wrappers, as "Type: message" each."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_causes(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def quiescence(run: Run) -> tuple[str, str] | None:
    """The pipeline's resting state, or None while something can still progress."""
    root = run.states.get(run.root_id)
    if root is not None and root.state in (states.FINISHED, states.REVOKED, states.SUSPENDED):
        return str(root.state), f"pipeline {run.root_id} is {root.state}"
    if root is not None and root.state == states.ROLL_BACK_FAILED:
        failed_back = sorted(
            n for n, st in run.states.items() if st.state == root.state and n != run.root_id
        )
        return str(root.state), "rollback failed at: " + ", ".join(failed_back)
    failed: list[str] = []
    paused: list[str] = []
    for proc in run.processes.values():
        match proc.status:
            case ProcStatus.DEAD | ProcStatus.JOINING:
                continue  # a joining parent rests when its children do
            case ProcStatus.RUNNING:
                return None
            case ProcStatus.SUSPENDED:
                paused.append(proc.suspended_by or proc.current_node_id)
            case ProcStatus.SLEEPING:
                st = run.states.get(proc.current_node_id)
                if st is None or st.state != states.FAILED:
                    return None  # waiting for a poll or callback: it will progress
                if run.timers is not None and run.timers.retry_pending(st.node_id):
                    return None  # retried automatically when its timer comes due
                failed.append(proc.current_node_id)
            case unknown:
                assert_never(unknown)
    if failed:
        return str(states.FAILED), "failed nodes: " + ", ".join(sorted(failed))
    if paused:
        return str(states.SUSPENDED), "paused at: " + ", ".join(sorted(set(paused)))
    return None


__all__ = ["Scheduler", "Settings", "quiescence"]
