"""Parking at scale: runs leave memory at every callback and come back in any worker.

Three Postgres worker processes park and load 150 callback-waiting pipelines while
workers are SIGKILLed (one while it loads and parks runs, another later): every
acknowledged callback takes effect, no node is FINISHED twice, every pipeline
finishes, and a client that reads the event log, disconnects and resumes from its
cursor sees every event once. Then one worker of concurrency 100 holds 1,000
pipelines that all wait on callbacks.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.engine import RunEvent, Settings
from conftest import PG_DSN, require_postgres

from .parking_chaos_components import STAGES, build, root_id, wait_id

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = 150
LEASE = 2.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Workers:
    def __init__(self, schema: str, log: Path, tmp: Path) -> None:
        self.schema, self.log, self.tmp = schema, log, tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self) -> subprocess.Popen[bytes]:
        # ROOT first, so the workers run this checkout's code whatever else is on the path.
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "AIOBAMBOO_CHAOS_LOG": str(self.log),
            "AIOBAMBOO_PG_DSN": PG_DSN,
            "AIOBAMBOO_PARK_AFTER": "0.05",
            "AIOBAMBOO_LEASE": str(LEASE),
            "PYTHONPATH": path,
        }
        err = open(self.tmp / f"worker{len(self.procs)}.log", "wb")
        self.logs.append(err)
        module = "tests.scaleout.parking_chaos_components"
        proc = subprocess.Popen(
            [sys.executable, "-m", module, self.schema], cwd=ROOT, env=env, stdout=err, stderr=err
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        for log in self.logs:
            log.close()


def _lines(log: Path) -> list[tuple[float, str, str, str]]:
    """(time, kind, node id, rest) of every execute() and schedule() the workers ran."""
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        stamp, kind, node_id, _pid, *rest = line.split(" ", 4)
        out.append((float(stamp), kind, node_id, rest[0] if rest else ""))
    return out


async def _finished_nodes(client: Any) -> set[str]:
    async with client.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT node_id FROM \"{client.schema}\".states WHERE state = 'FINISHED'"
        )
    return {r["node_id"] for r in rows}


class Callbacks:
    """Sends each wait node its callback once it waits, from a client, several at a time."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.acked: dict[str, dict[str, Any]] = {}
        #: node id -> (sent at, answered at, message) of every refused callback.
        self.refused: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        #: Wait nodes FINISHED though no callback to them was acknowledged.
        self.unacknowledged: set[str] = set()
        self.pending = {wait_id(i, s) for i in range(PIPELINES) for s in range(STAGES)}

    async def run(self, stop: anyio.Event) -> None:
        limiter = anyio.CapacityLimiter(20)
        while self.pending and not stop.is_set():
            async with anyio.create_task_group() as tg:
                for node_id in sorted(self.pending):
                    tg.start_soon(self._one, node_id, limiter)
            await anyio.sleep(0.05)

    async def _one(self, node_id: str, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            states = (await api.get_children_states(self.client, node_id)).data or {}
            node = states.get(node_id)
            if node is None:
                return
            if node["state"] == "FINISHED":
                if node_id not in self.acked:
                    self.unacknowledged.add(node_id)
                self.pending.discard(node_id)
                return
            if node["state"] != "RUNNING":
                return
            data = {"node": node_id, "token": random.random()}
            sent = time.time()
            res = await api.callback(self.client, node_id, node["version"], data)
            if res.result:
                self.acked[node_id] = data
                self.pending.discard(node_id)
            else:
                self.refused[node_id].append((sent, time.time(), res.message))


class Subscriber:
    """Reads every event from the start, reconnecting from its cursor every few dozen."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: list[RunEvent] = []
        self.reconnects = 0

    async def run(self) -> None:
        rng = random.Random(5)
        cursor = 0
        finished: set[str] = set()
        while len(finished) < PIPELINES:
            async with api.subscribe(self.client, after=cursor) as events:
                self.reconnects += 1
                want = rng.randint(20, 80)
                async for event in events:
                    self.seen.append(event)
                    cursor = event.id
                    if event.kind == "pipeline_finished":
                        finished.add(event.root_id)
                    want -= 1
                    if want == 0 or len(finished) == PIPELINES:
                        break
            await anyio.sleep(rng.random() * 0.1)


async def _all_events(client: Any) -> list[Any]:
    rows: list[Any] = []
    while True:
        page = await client.store.read_events(rows[-1].id if rows else 0, None, 1000)
        if not page:
            return rows
        rows.extend(page)


async def test_parking_workers_killed_mid_way_lose_nothing(tmp_path: Path) -> None:
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    schema = "parkchaos_" + uuid.uuid4().hex[:10]
    log = tmp_path / "calls.log"
    workers = Workers(schema, log, tmp_path)
    client = PostgresRuntime(
        PG_DSN, schema=schema, worker=False, settings=Settings(poll_interval=0.05)
    )
    kills: list[tuple[float, set[str]]] = []
    try:
        async with client:
            for _ in range(3):
                workers.start()
            callbacks, subscriber = Callbacks(client), Subscriber(client)
            stop = anyio.Event()
            # Within pytest's own timeout, so that a lost event or a stuck run says so.
            with anyio.fail_after(50):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(subscriber.run)
                    async with anyio.create_task_group() as starting:
                        for index in range(PIPELINES):
                            starting.start_soon(api.run_pipeline, client, build(index))
                    tg.start_soon(callbacks.run, stop)
                    # Mid-way through the first callbacks (runs parked, loaded, parking),
                    # then mid-way through the second ones.
                    for victim, share in ((0, 1 / 3), (1, 3 / 2)):
                        while len(callbacks.acked) < PIPELINES * share:  # noqa: ASYNC110
                            await anyio.sleep(0.02)
                        workers.procs[victim].send_signal(signal.SIGKILL)
                        workers.procs[victim].wait()
                        done = await _finished_nodes(client)
                        kills.append((time.time(), done))
                        workers.start()
                    for index in range(PIPELINES):
                        waited = await api.wait_pipeline(client, root_id(index), timeout=40)
                        assert waited.data == "FINISHED", (index, waited.message)
                    stop.set()
            events = await _all_events(client)
            for node_id, data in callbacks.acked.items():
                got = (await api.get_execution_data_outputs(client, node_id)).data or {}
                assert got.get("got") == data, node_id
            outputs = {
                node_id: (await api.get_execution_data_outputs(client, node_id)).data or {}
                for node_id in callbacks.unacknowledged
            }
            async with client.pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        workers.stop_all()

    # Acknowledged exactly when delivered: a callback taken but refused to its sender is
    # excused only when the worker that applied it was killed before it answered.
    for node_id in callbacks.unacknowledged:
        sent_by_us = outputs[node_id].get("got", {}).get("node") == node_id
        assert sent_by_us, (node_id, outputs[node_id])
        at_a_kill = any(
            sent <= at <= answered
            for sent, answered, _ in callbacks.refused[node_id]
            for at, _ in kills
        )
        assert at_a_kill, f"{node_id} took a callback refused to its sender: {callbacks.refused}"

    # No node FINISHED twice, and every node of every pipeline FINISHED once.
    finished = Counter(e.node_id for e in events if e.kind == "state" and e.state == "FINISHED")
    twice = {n: c for n, c in finished.items() if c > 1}
    assert not twice, f"FINISHED more than once: {list(twice.items())[:5]}"
    ended = Counter(e.root_id for e in events if e.kind == "pipeline_finished")
    assert set(ended) == {root_id(i) for i in range(PIPELINES)}
    assert set(ended.values()) == {1}

    # The subscriber, across its reconnects and the workers' deaths, saw each event once.
    assert subscriber.reconnects > 10
    ids = [e.id for e in subscriber.seen]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert ids == [e.id for e in events]
    assert [(e.kind, e.node_id, e.state) for e in subscriber.seen] == [
        (e.kind, e.node_id, e.state) for e in events
    ]

    # Component calls: nothing FINISHED before a kill ran again; a callback is redelivered
    # only as itself (the at-least-once window of a kill), never mixed with another.
    calls = _lines(log)
    for at, done in kills:
        again = {n for stamp, kind, n, _ in calls if stamp > at and kind == "exec" and n in done}
        assert not again, f"FINISHED before a kill, executed again: {sorted(again)[:5]}"
    delivered: dict[str, set[str]] = defaultdict(set)
    for _, kind, node_id, text in calls:
        if kind == "sched":
            delivered[node_id].add(text)
    for node_id, texts in delivered.items():
        assert len(texts) == 1, (node_id, texts)
        data = json.loads(next(iter(texts)))
        if node_id in callbacks.acked:
            assert data == callbacks.acked[node_id]
    assert set(delivered) == set(callbacks.acked) | callbacks.unacknowledged
    executions = sum(Counter(n for _, kind, n, _ in calls if kind == "exec").values())
    excused = [callbacks.refused[n][-1][2] for n in sorted(callbacks.unacknowledged)]
    print(
        f"\nparking chaos: {len(events)} events, {executions} executions, "
        f"{subscriber.reconnects} reconnects, refused at a kill yet taken: {excused}"
    )


async def test_a_worker_of_concurrency_100_holds_1000_waiting_pipelines() -> None:
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    count = 1000
    schema = "parkmany_" + uuid.uuid4().hex[:10]
    worker = PostgresRuntime(
        PG_DSN, schema=schema, settings=Settings(concurrency=100, park_after=0.1, poll_interval=0.1)
    )
    client = PostgresRuntime(
        PG_DSN, schema=schema, worker=False, settings=Settings(poll_interval=0.1)
    )
    trees = [build(index, stages=1) for index in range(count)]
    waiting = {wait_id(index, 0) for index in range(count)}
    most = 0
    try:
        async with worker, client:
            sampling = anyio.Event()

            async def sample() -> None:
                nonlocal most
                while not sampling.is_set():
                    most = max(most, worker.scheduler.held)
                    await anyio.sleep(0.002)

            async with anyio.create_task_group() as tg:
                tg.start_soon(sample)
                began = time.monotonic()
                limiter = anyio.CapacityLimiter(50)
                async with api.subscribe(client) as events:

                    async def run(tree: dict[str, Any]) -> None:
                        async with limiter:
                            res = await api.run_pipeline(client, tree)
                            assert res.result, res.message

                    async with anyio.create_task_group() as starting:
                        for tree in trees:
                            starting.start_soon(run, tree)
                    # Every callback node RUNNING: its events say so.
                    running: set[str] = set()
                    with anyio.fail_after(25):
                        async for event in events:
                            if event.node_id in waiting and event.state == "RUNNING":
                                running.add(event.node_id)
                                if running == waiting:
                                    break
                reached = time.monotonic() - began
                versions: dict[str, str] = {}
                for node_id in sorted(waiting):
                    entry = ((await api.get_children_states(client, node_id)).data or {})[node_id]
                    assert entry["state"] == "RUNNING"
                    versions[node_id] = entry["version"]
                assert most <= 100, f"{most} runs in memory at once"

                failures: list[str] = []

                async def answer(node_id: str) -> None:
                    async with limiter:
                        while True:
                            data = {"node": node_id}
                            res = await api.callback(client, node_id, versions[node_id], data)
                            if res.result:
                                return
                            if "can not find sleep process" not in res.message:
                                failures.append(res.message)
                                return
                            await anyio.sleep(0.05)

                with anyio.fail_after(25):
                    async with anyio.create_task_group() as answering:
                        for node_id in waiting:
                            answering.start_soon(answer, node_id)
                    assert failures == [], failures[:5]
                    for tree in trees:
                        res = await api.wait_pipeline(client, tree["id"], timeout=25)
                        assert res.data == "FINISHED", res.message
                sampling.set()
            assert most <= 100, f"{most} runs in memory at once"
            for node_id in random.Random(3).sample(sorted(waiting), 50):
                got = (await api.get_execution_data_outputs(client, node_id)).data or {}
                assert got["got"] == {"node": node_id}
            print(
                f"\n1000 pipelines at concurrency 100: all waiting after {reached:.1f} s, "
                f"done after {time.monotonic() - began:.1f} s, at most {most} in memory"
            )
    finally:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
