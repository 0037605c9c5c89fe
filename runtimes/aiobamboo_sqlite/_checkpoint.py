"""A checkpointer: copies the write-ahead log into the database file, off the commit path.

In WAL mode a commit appends pages to ``<db>-wal``; a checkpoint copies them
into the database file and fsyncs it, after which the next write starts the
log over. Left to SQLite, the commit that takes the log past
``wal_autocheckpoint`` pages (1,000) runs the whole checkpoint itself, so
every few dozen node steps one of them pays for copying the log and two
fsyncs. Here a thread with a connection of its own runs PASSIVE checkpoints
shortly after commits: a PASSIVE checkpoint never waits for a lock and never
holds the writer up, so the copying and the fsyncs happen beside the commits.

Under commits that never pause, a checkpoint beside them can never copy
the very last frames (more arrive while it fsyncs), and the log starts over
only after a checkpoint that copied all of it. So once the log has reached
``LOG_PAGES``, this thread hands the rest to the writer: a checkpoint runs
on the writer's connection between two of its transactions, finds nearly
all of the log copied already, copies the rest, and the next commit starts
the log over. This thread shares the GIL with the event loop and the
writer, so on a busy process it can fall behind: the writer keeps SQLite's
autocheckpoint at ``WRITER_PAGES`` as the bound that does not depend on it.
So the log stays within some ten thousand pages (SQLite's default bound is
1,000), while the commit path does a small share of the work. (A reader of
another process that holds on to the log keeps any checkpoint from starting
it over, whoever runs it, as before.)
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from collections.abc import Callable

__all__ = ["LOG_PAGES", "WRITER_PAGES", "Checkpointer"]

#: The log's length, in pages, from which the writer finishes the checkpoint
#: (16 MB of the runtime's 2 KB pages). Finishing costs the commits waiting
#: behind it the checkpoint's two fsyncs, some milliseconds, however short
#: the rest to copy: with SQLite's default of 1,000 pages that came every
#: hundred node steps or so, some 40 us a step.
LOG_PAGES = 8000

#: The writer's own ``wal_autocheckpoint``: the bound should this thread lag.
WRITER_PAGES = 2 * LOG_PAGES

#: Runs ``done`` once a PASSIVE checkpoint has run on the writer's connection.
Finish = Callable[[Callable[[], None]], None]

logger = logging.getLogger("aiobamboo.sqlite")


class Checkpointer:
    """``poke()`` after a commit; a PASSIVE checkpoint follows within ``gather`` seconds.

    ``gather`` lets the commits of a busy moment share a checkpoint: each
    checkpoint that copies anything fsyncs the log and the database file, and
    copies a page once however many commits rewrote it meanwhile (the last
    pages of a table or an index are rewritten at nearly every node step).
    At 10 ms rather than 2 ms, a 1,000-step chain took some 12 checkpoints
    instead of 54, and 10 % less time.
    """

    def __init__(
        self, path: str, synchronous: str, finish: Finish, *, gather: float = 0.01
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.finish = finish
        self.gather = gather
        #: Checkpoints run so far, and the last one's (busy, log frames, copied frames).
        self.rounds = 0
        self.last: tuple[int, int, int] | None = None
        #: Checkpoints handed to the writer so far.
        self.handed = 0
        self._pokes = 0  # counted on the event loop's thread only
        self._resume_at = 0  # the poke count from which this thread checkpoints again
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._serve, name=f"aiobamboo-sqlite-checkpoint {self.path}", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """A commit ended."""
        self._pokes += 1
        # Setting takes the event's lock; while it is set, this commit is
        # covered anyway: the thread clears it before it checkpoints.
        if not self._wake.is_set():
            self._wake.set()

    def _handed_back(self) -> None:
        # On the writer's thread, between two commits: at most one commit's poke
        # is still on its way, so the second poke from now is of a commit that
        # began after this checkpoint, and started the log over.
        self._resume_at = self._pokes + 2

    def stop(self) -> None:
        """Run a last checkpoint, close the connection and end the thread (blocks)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join()

    def _serve(self) -> None:
        try:
            # Its checkpoints sync as the writer's commits do: the setting is per connection.
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA mmap_size=0")  # see the runtime's notes on SIGBUS
        except sqlite3.Error as exc:
            # The writer's own autocheckpoint still bounds the log.
            logger.warning("SQLite checkpointer for %s not started: %s", self.path, exc)
            return
        try:
            # stop() sets _stopping before _wake: a wake-up cleared here after
            # stop() is seen as stopping, never slept through.
            while not self._stopping.is_set():
                self._wake.wait()
                self._stopping.wait(self.gather)
                self._wake.clear()
                # Until the writer has finished and started the log over, a
                # checkpoint here could only get in its way.
                if self._stopping.is_set() or self._pokes < self._resume_at:
                    continue
                self._checkpoint(conn)
                if self.last is not None and self.last[1] >= LOG_PAGES:
                    self._resume_at = sys.maxsize
                    self.handed += 1
                    self.finish(self._handed_back)
            self._checkpoint(conn)  # the last one, once the writer is done
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            # A damaged or vanished file: the writer reports it on its next commit.
            logger.debug("SQLite checkpoint of %s failed: %s", self.path, exc)
            return
        self.rounds += 1
        self.last = (int(row[0]), int(row[1]), int(row[2]))
