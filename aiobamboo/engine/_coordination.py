"""Sharing one database between processes: leases on runs, and commands to their owners.

A worker process holds the runs it claimed (``claim_runs``) and renews their
leases; a run whose lease ran out is claimed by another worker, and its old
owner's writes are refused from then on (the runtime fences every commit on
the owner). An operation on a run that another process holds travels as a
command: the sender stores it and signals, the owner applies it to its
in-memory run, exactly as a local call, and stores the outcome.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import anyio

from .. import codec, exceptions
from ..exceptions import AiobambooError, InvalidOperationError
from ..runtime import RUN_ACTIVE, RUN_REVOKED, CommandRow
from ._env import logger

if TYPE_CHECKING:
    from ._scheduler import Scheduler

#: The operator actions, by the names the API and commands use.
OperationName = Literal[
    "pause_pipeline",
    "resume_pipeline",
    "revoke_pipeline",
    "pause_node_appoint",
    "resume_node_appoint",
    "retry_node",
    "retry_subprocess",
    "skip_node",
    "skip_exclusive_gateway",
    "skip_conditional_parallel_gateway",
    "forced_fail_activity",
    "callback",
    "update_context_values",
    "rollback",
    "retry_rollback_failed_node",
    "reserve_rollback",
    "cancel_reserved_rollback",
]

#: Operations a command may name (everything else is refused, whatever the database says).
OPERATIONS: frozenset[str] = frozenset(get_args(OperationName))


def operation_name(op: str) -> OperationName:
    """``op`` as an operation name; refuses any other string (a command row holds any text)."""
    if op not in OPERATIONS:
        raise InvalidOperationError(f"unknown operation {op!r}")
    return cast(OperationName, op)


#: Runs claimed (and loaded, with one read) per query; a worker loops while it
#: gets full batches. Small enough that idle workers woken together share the work.
CLAIM_BATCH = 64
#: Seconds between two purges of the events older than ``Settings.event_retention``.
PURGE_EVERY = 60.0
#: Seconds between two looks at whether the run of a pending command has ended.
ENDED_CHECK = 1.0
#: How many command timeouts a sender waits for a command a worker has taken.
_TAKEN_PATIENCE = 4


def _encode_error(exc: AiobambooError) -> str:
    return json.dumps({"type": type(exc).__name__, "message": str(exc)})


def _decode_error(text: str) -> AiobambooError:
    try:
        data = json.loads(text)
        cls = getattr(exceptions, data["type"], InvalidOperationError)
        message = data["message"]
    except (ValueError, KeyError, TypeError):
        cls, message = InvalidOperationError, text
    if not (isinstance(cls, type) and issubclass(cls, AiobambooError)):
        cls = InvalidOperationError
    return cls(message)


async def claim_loop(scheduler: Scheduler) -> None:
    """Claim runs while there is room, apply commands, then wait for a signal.

    Runs are claimed when nobody holds them (new runs of clients, runs a
    worker released or lost) and when something wakes a parked one (a timer
    due by the engine's clock, a command sent to it).
    """
    settings = scheduler.settings
    purged = time.monotonic()
    while True:
        try:
            # Without claim_runs, only the commands of the runs held here (below).
            while settings.claim_runs and (room := settings.concurrency - scheduler.held) > 0:
                # A few at a time, so that idle workers woken together share the work.
                want = min(room, CLAIM_BATCH)
                # Each claim is registered at once (load_soon), with no await in
                # between: an operation on the run waits for this load, not its own.
                claimed = await scheduler.store.claim_runs(want)
                await _load_or_release(scheduler, claimed, commands=False)
                if len(claimed) < want:
                    now = scheduler.clock.now()
                    woken = await scheduler.store.claim_woken(want - len(claimed), now)
                    await _load_or_release(scheduler, woken, commands=True)
                    claimed += woken
                # Commands are taken only for runs in memory: let this round's loads
                # land first, so that the commands that woke them are taken now.
                await scheduler.loaded(claimed)
                await run_commands(scheduler)
                if len(claimed) < want:
                    break
            else:
                await run_commands(scheduler)
            if time.monotonic() - purged > PURGE_EVERY:
                purged = time.monotonic()
                await _purge_events(scheduler)
        except Exception:
            logger.exception("claiming work failed; retrying")
            await anyio.sleep(settings.poll_interval)
        await _wait_for_work(scheduler, settings.poll_interval)


async def _wait_for_work(scheduler: Scheduler, at_most: float) -> None:
    """Until storage signals, ``at_most`` seconds pass, or (when full) room frees here.

    A run parking or ending frees a slot for a run waiting to be claimed:
    without this, a full worker would find the room only on its next poll.
    While the worker is full, its idle runs park without waiting ``park_after``.
    """
    if scheduler.held < scheduler.settings.concurrency:
        await scheduler.store.wait_for_signal(at_most)
        return
    room = scheduler.room = anyio.Event()
    scheduler.wake_parker()  # idle runs give their slots up at once
    try:
        with anyio.move_on_after(at_most):
            async with anyio.create_task_group() as tg:

                async def signalled() -> None:
                    await scheduler.store.wait_for_signal(at_most)
                    tg.cancel_scope.cancel()

                tg.start_soon(signalled)
                await room.wait()
                tg.cancel_scope.cancel()
    finally:
        scheduler.room = None


async def _load_or_release(scheduler: Scheduler, claimed: list[str], *, commands: bool) -> None:
    """Load the claimed runs there is room for; give the others back at once.

    An operation may have loaded a run while the claim was on its way, so the
    room is counted again: ``Settings.concurrency`` is never exceeded.
    """
    room = scheduler.settings.concurrency - scheduler.held
    load = claimed[: max(room, 0)]
    extra = claimed[len(load) :]
    scheduler.load_soon(load, commands=commands)
    if extra:
        await scheduler.store.release_runs(extra)


async def _purge_events(scheduler: Scheduler) -> None:
    retention = scheduler.settings.event_retention
    if retention is None:
        return
    purged = await scheduler.store.purge_events(time.time() - retention)
    if purged:
        logger.info("purged %d events older than %g s", purged, retention)


async def renew_loop(scheduler: Scheduler) -> None:
    """Keep the leases of held runs; drop the runs whose lease was lost."""
    while True:
        await anyio.sleep(scheduler.store.lease_seconds / 3)
        # Not the runs whose creation is still on its way: storage would not
        # know them yet, and they would be dropped as if their lease were lost.
        creating = scheduler.creating
        held = {r: run for r, run in scheduler.runs.items() if r not in creating}
        if not held:
            continue
        try:
            kept = set(await scheduler.store.renew_leases(list(held)))
        except Exception:
            logger.exception("renewing leases failed")
            continue
        for root_id, run in held.items():
            if root_id in kept or scheduler.runs.get(root_id) is not run:
                # Parked meanwhile, and maybe loaded again since (a callback woke it):
                # the run in memory now is not the one whose lease was asked about.
                continue
            if run.finished or run.revoked:
                continue  # ended while the renewal was on its way: it leaves by itself
            logger.warning("lost the lease of run %s; dropping it", root_id)
            scheduler.drop(root_id)


async def run_commands(scheduler: Scheduler) -> None:
    """Apply the commands sent to runs this scheduler holds, each in a task of its own.

    A command may wait on the run (a callback to a multi-callback node is answered
    once its schedule takes it), so one command never holds up the claim loop nor
    the commands after it.
    """
    if not scheduler.runs:
        return
    held = list(scheduler.runs)
    rows = await scheduler.store.pending_commands(held)
    # Taken now (and pinned by their application): the runs woken for them may park.
    scheduler.commands_taken(held)
    tg = scheduler.task_group
    for row in rows:
        if tg is None:
            await _apply_command(scheduler, row)
        else:
            tg.start_soon(_apply_command, scheduler, row)


async def _apply_command(scheduler: Scheduler, row: CommandRow) -> None:
    ok, message = False, ""
    try:
        op = operation_name(row.op)
        args = codec.loads(row.args_json)
        await scheduler.apply_operation(op, args)
        ok = True
    except AiobambooError as exc:
        message = _encode_error(exc)
    except Exception as exc:
        logger.exception("command %s (%s) failed", row.id, row.op)
        message = _encode_error(InvalidOperationError(f"internal error: {exc}"))
    try:
        await scheduler.store.complete_command(row.id, ok, message)
    except Exception:
        # The sender gives up after a while with a clear message; the claim loop goes on.
        logger.exception("storing the outcome of command %s (%s) failed", row.id, row.op)


async def _ended(store: Any, root_id: str) -> str | None:
    """Why ``root_id`` takes no more operations, if it ended; None while it is active."""
    run = await store.get_run(root_id)
    if run is None or run.status == RUN_ACTIVE:
        return None
    if run.status == RUN_REVOKED:
        return f"pipeline {root_id} has been revoked"
    return f"pipeline {root_id} has already finished"


async def send_command(
    scheduler: Scheduler, root_id: str, op: OperationName, args: list[Any]
) -> None:
    """Have the owner of ``root_id`` apply ``op``; raise what it raised."""
    store = scheduler.store
    command_id = await store.submit_command(root_id, op, codec.dumps(args, "arguments"))
    timeout = scheduler.settings.command_timeout
    started = time.monotonic()
    checked = 0.0
    delay = 0.005
    while True:
        row = await store.get_command(command_id)
        if row is not None and row.status == "done":
            if row.ok:
                return
            raise _decode_error(row.message)
        waited = time.monotonic() - started
        if waited > timeout and await store.cancel_command(command_id):
            raise InvalidOperationError(
                f"no worker applied {op} to pipeline {root_id} within {timeout} s; "
                "is a worker running?"
            )
        if waited > checked + ENDED_CHECK and row is not None and row.status == "pending":
            # The run may have ended since it was sent (its last callback arrived
            # meanwhile): nobody holds an ended run, so nobody would take it.
            checked = waited
            ended = await _ended(store, root_id)
            if ended is not None and await store.cancel_command(command_id):
                raise InvalidOperationError(ended)
        # Taken, so no longer cancellable: the holder applies it (a callback may wait
        # for its turn), or, if it died, the next holder takes it again. A holder that
        # applied it and died before answering leaves nobody to answer: give up then.
        if waited > _TAKEN_PATIENCE * timeout:
            raise InvalidOperationError(
                f"the worker holding pipeline {root_id} took {op} but gave no answer within "
                f"{_TAKEN_PATIENCE * timeout:g} s; it may or may not have been applied"
            )
        await store.wait_for_signal(delay)
        delay = min(delay * 2, 0.2)
