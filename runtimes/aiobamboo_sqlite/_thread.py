"""One sqlite3 connection on one thread the runtime owns.

Every call on the connection is a plain function submitted through a queue
and run on that thread, one at a time, in order; its result comes back to the
event loop through ``loop.call_soon_threadsafe``. A whole group commit is one
such call, so a group of node steps costs one thread hop and one commit.
This is the standard library's ``sqlite3`` only: no private API of a wrapper
to keep in step with.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["SQLiteThread"]

T = TypeVar("T")

#: Told on the event loop how a call ended: its result, or the error it raised.
Report = Callable[[Any, BaseException | None], None]

#: A call for the thread: the function, its arguments, and who is told its outcome
#: on which loop (nobody, for a call posted from another thread).
_Call = tuple[Callable[..., Any], tuple[Any, ...], Report | None, asyncio.AbstractEventLoop | None]

logger = logging.getLogger("aiobamboo.sqlite")


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _report(call: _Call, result: Any, error: BaseException | None) -> None:
    _, _, report, loop = call
    if report is None or loop is None:
        if error is not None:
            logger.warning("SQLite call %r failed: %s", call[0], error)
        return
    try:
        loop.call_soon_threadsafe(report, result, error)
    except RuntimeError:
        pass  # the loop is closed: nobody is left to tell


class SQLiteThread:
    """``await thread.call(fn, *args)`` runs ``fn(connection, *args)`` on the thread."""

    def __init__(self, path: str, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        #: How long the thread's statements wait for another connection's lock.
        self.busy_timeout_ms = busy_timeout_ms
        # Whether the connection's busy timeout is busy_timeout_ms (else 0, as
        # run_here leaves it): switched only when the other side runs next.
        self._waits = True
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        # Held by whoever uses the connection: the thread, for each call, or
        # the event loop, for a call it runs itself (``run_here``).
        self._using = threading.Lock()
        # Calls submitted from the event loop, and how many of them the thread
        # has finished; each is written by one thread only.
        self._submitted = 0
        self._finished = 0

    async def open(self) -> None:
        """Start the thread and connect on it; raises what ``sqlite3.connect`` raised."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._serve,
            args=(ready, asyncio.get_running_loop()),
            name=f"aiobamboo-sqlite {self.path}",
            daemon=True,
        )
        self._thread.start()
        connected = False
        try:
            await ready
            connected = True
        finally:
            if not connected:  # failed or cancelled: the thread must not outlive us
                await self._join()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.submit(fn, args, functools.partial(_resolve, future))
        return await future

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], report: Report) -> None:
        """Queue ``fn(connection, *args)``; ``report(result, error)`` runs on this loop after.

        Without a future to await, the outcome reaches its user one pass of the
        event loop sooner: ``report`` itself is what the thread schedules.
        """
        if self._thread is None:
            raise sqlite3.ProgrammingError("the connection is closed")
        self._submitted += 1
        self._calls.put((fn, args, report, asyncio.get_running_loop()))

    @property
    def idle(self) -> bool:
        """Open, and no call submitted from the event loop is queued or running."""
        return self._thread is not None and self._submitted == self._finished

    def run_here(self, fn: Callable[..., T], *args: Any) -> tuple[bool, T | None]:
        """Run ``fn(connection, *args)`` on the calling (event loop) thread, if the thread is idle.

        Returns ``(True, result)``, or ``(False, None)`` without calling ``fn``
        while a call submitted from the event loop is queued or running (it
        must go first) or the thread is busy with a posted one. For a short
        call this saves the two thread wake-ups of a hop, which cost more
        than the call. ``fn`` runs with the busy timeout at zero, so that it
        never holds the loop up waiting for another connection's lock: a
        statement that would wait raises ``SQLITE_BUSY`` at once.
        """
        conn = self._conn
        if conn is None or not self.idle:
            return False, None
        if not self._using.acquire(blocking=False):
            return False, None
        try:
            if self._waits:
                conn.execute("PRAGMA busy_timeout=0")
                self._waits = False
            return True, fn(conn, *args)
        finally:
            self._using.release()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(connection, *args)`` on the thread, from any thread; nobody waits for it."""
        if self._thread is not None:
            self._calls.put((fn, args, None, None))

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        await self.call(_execute, sql, params)

    async def execute_fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return await self.call(_fetchall, sql, params)

    async def close(self) -> None:
        """Close the connection (after every call submitted before), then end the thread."""
        if self._thread is None:
            return
        self._conn = None  # no more calls run here
        try:
            await self.call(_close)
        finally:
            await self._join()

    async def _join(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(None)
            await asyncio.to_thread(thread.join)

    def _serve(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        opening: _Call = (sqlite3.connect, (), functools.partial(_resolve, ready), loop)
        try:
            # Autocommit: the runtime opens its own transactions (BEGIN IMMEDIATE).
            # Used from the event loop's thread too (run_here), never at once.
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
        except Exception as exc:
            _report(opening, None, exc)
            return
        self._conn = conn
        _report(opening, None, None)
        try:
            while (call := self._calls.get()) is not None:
                fn, args, _, caller = call
                error: BaseException | None = None
                result = None
                with self._using:
                    try:
                        if not self._waits:
                            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
                            self._waits = True
                        result = fn(conn, *args)
                    except Exception as exc:
                        error = exc
                    if caller is not None:
                        self._finished += 1
                _report(call, result, error)
        finally:
            self._conn = None
            with self._using:
                conn.close()


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.execute(sql, params)


def _fetchall(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _close(conn: sqlite3.Connection) -> None:
    conn.close()
