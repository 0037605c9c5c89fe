"""The group committer on a fake store: groups, refusals, failures, close and cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from aiobamboo.exceptions import InvalidOperationError, StorageError
from aiobamboo.runtime import RUN_FINISHED, RUN_REVOKED, ProcessRow, WriteBatch
from aiobamboo.storage import BatchOutcome, GroupCommitter, merge


class FakeStore:
    """Records each group; refuses batches whose root id starts with ``bad``."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None

    async def write_group(self, batches: list[WriteBatch]) -> list[BatchOutcome]:
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.groups.append([b.root_id for b in batches])
        return [
            InvalidOperationError(b.root_id) if b.root_id.startswith("bad") else None
            for b in batches
        ]


async def test_concurrent_commits_share_a_group_and_fail_alone() -> None:
    store = FakeStore()
    committer = GroupCommitter(store.write_group, what="fake")
    committer.start()
    outcomes = await asyncio.gather(
        *(committer.commit(WriteBatch(root_id=r)) for r in ("a", "bad", "c")),
        return_exceptions=True,
    )
    await committer.aclose()
    assert store.groups == [["a", "bad", "c"]]
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], InvalidOperationError)


async def test_a_failing_group_fails_each_batch_and_the_committer_goes_on() -> None:
    store = FakeStore()
    committer = GroupCommitter(store.write_group, what="fake")
    committer.start()
    store.fail_with = RuntimeError("disk on fire")
    with pytest.raises(StorageError, match="fake commit failed: RuntimeError: disk on fire"):
        await committer.commit(WriteBatch(root_id="a"))
    store.fail_with = None
    await committer.commit(WriteBatch(root_id="b"))
    await committer.aclose()
    assert store.groups == [["b"]]


async def test_closing_waits_for_the_queue() -> None:
    store = FakeStore()
    store.gate.clear()
    committer = GroupCommitter(store.write_group, what="fake")
    committer.start()
    first = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0.01)  # "a" is in flight
    later = asyncio.ensure_future(committer.commit(WriteBatch(root_id="b")))
    await asyncio.sleep(0)  # "b" is queued
    closing = asyncio.ensure_future(committer.aclose())
    await asyncio.sleep(0.01)
    assert not closing.done()
    store.gate.set()
    with anyio.fail_after(5):
        await closing
    assert await first is None
    assert await later is None
    assert store.groups == [["a"], ["b"]]


async def test_a_write_that_outlasts_closing_fails_clearly() -> None:
    store = FakeStore()
    store.gate.clear()  # never opens
    committer = GroupCommitter(store.write_group, what="fake", close_timeout=0.05)
    committer.start()
    first = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0.01)
    later = asyncio.ensure_future(committer.commit(WriteBatch(root_id="b")))
    await asyncio.sleep(0)
    with anyio.fail_after(5):
        await committer.aclose()
        with pytest.raises(StorageError, match="closed during this commit"):
            await first
        with pytest.raises(StorageError, match="closed before this commit"):
            await later


async def test_a_cancelled_caller_leaves_its_batch_in_the_group() -> None:
    store = FakeStore()
    store.gate.clear()
    committer = GroupCommitter(store.write_group, what="fake")
    committer.start()
    task = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.gate.set()
    await committer.aclose()
    assert store.groups == [["a"]]


def _process(pid: str, root_id: str) -> ProcessRow:
    return ProcessRow(pid, root_id, None, "n", None, (), "running", None, (), ())


def test_merging_keeps_call_order_and_the_processes_written_after_a_run_ends() -> None:
    merged = merge(
        [
            WriteBatch(root_id="r", processes={"a": _process("a", "r")}),
            WriteBatch(root_id="s", processes={"s1": _process("s1", "s")}),
            WriteBatch(root_id="r", run_status=RUN_FINISHED),
            WriteBatch(root_id="r", processes={"b": _process("b", "r")}),
            WriteBatch(root_id="r", run_status=RUN_REVOKED),
            WriteBatch(root_id="r", processes={"c": _process("c", "r")}),
        ]
    )
    assert sorted(merged.processes) == ["c", "s1"]
    assert merged.ended == {"r"}
    assert merged.run_status == {"r": RUN_REVOKED}
    assert merged
    assert not merge([WriteBatch(root_id="r")])


class SubmittingStore:
    """A store that writes on a "thread": ``release()`` ends the write in flight."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.pending: list[tuple[list[WriteBatch], Any]] = []
        self.hold = False
        self.fail_with: Exception | None = None

    def submit_group(self, batches: list[WriteBatch], done: Any) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.pending.append((batches, done))
        if not self.hold:
            asyncio.get_running_loop().call_soon(self.release)

    def release(self) -> None:
        batches, done = self.pending.pop(0)
        self.groups.append([b.root_id for b in batches])
        done(
            [
                InvalidOperationError(b.root_id) if b.root_id.startswith("bad") else None
                for b in batches
            ],
            None,
        )


def _submitting(store: SubmittingStore, **options: Any) -> GroupCommitter:
    committer = GroupCommitter(submit_group=store.submit_group, what="fake", **options)
    committer.start()
    return committer


def test_a_committer_takes_one_way_of_writing() -> None:
    with pytest.raises(TypeError):
        GroupCommitter(what="fake")


async def test_submitting_commits_made_meanwhile_go_out_as_the_next_group() -> None:
    store = SubmittingStore()
    store.hold = True
    committer = _submitting(store)
    first = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0)  # "a" is submitted at once, alone
    later = [
        asyncio.ensure_future(committer.commit(WriteBatch(root_id=r))) for r in ("b", "bad", "c")
    ]
    await asyncio.sleep(0)
    assert len(store.pending) == 1  # one group in flight at a time
    store.hold = False
    store.release()
    outcomes = await asyncio.gather(first, *later, return_exceptions=True)
    await committer.aclose()
    assert store.groups == [["a"], ["b", "bad", "c"]]
    assert [outcomes[0], outcomes[1], outcomes[3]] == [None, None, None]
    assert isinstance(outcomes[2], InvalidOperationError)


async def test_submitting_a_group_that_fails_fails_each_batch_and_goes_on() -> None:
    store = SubmittingStore()
    committer = _submitting(store)
    store.fail_with = RuntimeError("disk on fire")
    with pytest.raises(StorageError, match="fake commit failed: RuntimeError: disk on fire"):
        await committer.commit(WriteBatch(root_id="a"))
    store.fail_with = None
    await committer.commit(WriteBatch(root_id="b"))
    await committer.aclose()
    assert store.groups == [["b"]]


async def test_submitting_a_write_that_ends_in_error_fails_its_commits() -> None:
    def broken(batches: list[WriteBatch], done: Any) -> None:
        asyncio.get_running_loop().call_soon(done, None, StorageError("the file is gone"))

    committer = GroupCommitter(submit_group=broken, what="fake")
    committer.start()
    with pytest.raises(StorageError, match="the file is gone"):
        await committer.commit(WriteBatch(root_id="a"))
    await committer.aclose()


async def test_submitting_closing_waits_for_the_queue_then_refuses() -> None:
    store = SubmittingStore()
    store.hold = True
    committer = _submitting(store)
    first = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(committer.commit(WriteBatch(root_id="b")))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(committer.aclose())
    await asyncio.sleep(0.01)
    assert not closing.done()
    store.hold = False
    store.release()
    with anyio.fail_after(5):
        await closing
    assert await first is None
    assert await later is None
    assert store.groups == [["a"], ["b"]]
    with pytest.raises(StorageError, match="not open"):
        await committer.commit(WriteBatch(root_id="c"))


async def test_submitting_a_write_that_outlasts_closing_fails_clearly() -> None:
    store = SubmittingStore()
    store.hold = True  # never released
    committer = _submitting(store, close_timeout=0.05)
    first = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(committer.commit(WriteBatch(root_id="b")))
    await asyncio.sleep(0)
    with anyio.fail_after(5):
        await committer.aclose()
        with pytest.raises(StorageError, match="closed during this commit"):
            await first
        with pytest.raises(StorageError, match="closed before this commit"):
            await later
    store.release()  # the write ends after all: nobody is told twice


async def test_submitting_a_cancelled_caller_leaves_its_batch_in_the_group() -> None:
    store = SubmittingStore()
    store.hold = True
    committer = _submitting(store)
    task = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.release()
    await committer.aclose()
    assert store.groups == [["a"]]


class WritingNowStore(SubmittingStore):
    """A submitting store that also writes small groups at once while ``idle``."""

    def __init__(self, *, at_most: int = 2) -> None:
        super().__init__()
        self.at_most = at_most
        self.idle = True
        self.now: list[list[str]] = []
        self.now_fails_with: Exception | None = None

    def write_now(self, batches: list[WriteBatch]) -> list[BatchOutcome] | None:
        if not self.idle or len(batches) > self.at_most:
            return None
        if self.now_fails_with is not None:
            raise self.now_fails_with
        self.now.append([b.root_id for b in batches])
        return [
            InvalidOperationError(b.root_id) if b.root_id.startswith("bad") else None
            for b in batches
        ]


def _writing_now(store: WritingNowStore) -> GroupCommitter:
    committer = GroupCommitter(
        submit_group=store.submit_group, write_now=store.write_now, what="fake"
    )
    committer.start()
    return committer


def test_write_now_goes_with_submit_group() -> None:
    store = FakeStore()
    with pytest.raises(TypeError):
        GroupCommitter(store.write_group, write_now=lambda batches: None, what="fake")


async def test_writing_now_groups_the_commits_of_one_pass_and_refuses_alone() -> None:
    store = WritingNowStore()
    committer = _writing_now(store)
    outcomes = await asyncio.gather(
        *(committer.commit(WriteBatch(root_id=r)) for r in ("a", "bad")),
        return_exceptions=True,
    )
    await committer.commit(WriteBatch(root_id="c"))
    await committer.aclose()
    assert store.now == [["a", "bad"], ["c"]]
    assert store.groups == []  # nothing went to the "thread"
    assert outcomes[0] is None
    assert isinstance(outcomes[1], InvalidOperationError)


async def test_a_group_write_now_declines_is_submitted() -> None:
    store = WritingNowStore(at_most=2)
    committer = _writing_now(store)
    await asyncio.gather(*(committer.commit(WriteBatch(root_id=r)) for r in "abc"))
    store.idle = False
    await committer.commit(WriteBatch(root_id="d"))
    await committer.aclose()
    assert store.groups == [["a", "b", "c"], ["d"]]
    assert store.now == []


async def test_commits_made_while_a_group_is_submitted_wait_for_it_then_may_go_now() -> None:
    store = WritingNowStore(at_most=1)
    store.hold = True
    committer = _writing_now(store)
    first = [asyncio.ensure_future(committer.commit(WriteBatch(root_id=r))) for r in "ab"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(store.pending) == 1  # too large to go now: submitted
    later = asyncio.ensure_future(committer.commit(WriteBatch(root_id="c")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert store.now == []  # written after the group in flight, never beside it
    store.release()
    await asyncio.gather(*first, later)
    await committer.aclose()
    assert store.groups == [["a", "b"]]
    assert store.now == [["c"]]


async def test_a_write_now_that_fails_fails_its_group_and_the_committer_goes_on() -> None:
    store = WritingNowStore()
    committer = _writing_now(store)
    store.now_fails_with = RuntimeError("disk on fire")
    with pytest.raises(StorageError, match="fake commit failed: RuntimeError: disk on fire"):
        await committer.commit(WriteBatch(root_id="a"))
    store.now_fails_with = None
    await committer.commit(WriteBatch(root_id="b"))
    await committer.aclose()
    assert store.now == [["b"]]


async def test_closing_writes_the_commits_of_the_pass_before_it_returns() -> None:
    store = WritingNowStore()
    committer = _writing_now(store)
    pending = asyncio.ensure_future(committer.commit(WriteBatch(root_id="a")))
    await asyncio.sleep(0)  # "a" is queued; its group goes out at the end of the pass
    with anyio.fail_after(5):
        await committer.aclose()
    assert await pending is None
    assert store.now == [["a"]]
