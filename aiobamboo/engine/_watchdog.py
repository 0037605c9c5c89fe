"""Notices when something blocks the event loop, and names the component doing it.

A thread posts a no-op callback to the loop now and then; when the loop has
not run it within the threshold, the thread looks at the loop thread's stack.
The loop pays one callback per quarter threshold, nothing per step.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from types import FrameType

from ..component import EndEventHandler, LazyVariable, Service
from ._env import logger

_USER_CODE = (Service, LazyVariable, EndEventHandler)


class Watchdog:
    """One per event loop and threshold, shared by the schedulers running on it."""

    _shared: dict[tuple[asyncio.AbstractEventLoop, float], Watchdog] = {}
    _lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self._loop_thread = threading.get_ident()
        self._users = 0
        self._stop = threading.Event()
        self._pending = False
        self._posted_at = 0.0
        self._warned = False
        self._thread = threading.Thread(target=self._watch, name="aiobamboo-watchdog", daemon=True)

    @classmethod
    def start_for(cls, loop: asyncio.AbstractEventLoop, threshold: float) -> Watchdog:
        """The watchdog of ``loop`` (called on the loop's thread), started if need be."""
        with cls._lock:
            dog = cls._shared.get((loop, threshold))
            if dog is None:
                dog = cls._shared[loop, threshold] = cls(loop, threshold)
                dog._thread.start()
            dog._users += 1
            return dog

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            key = (self.loop, self.threshold)
            if self._shared.get(key) is self:
                del self._shared[key]
        self._stop.set()

    def _beat(self) -> None:
        self._pending = False

    def _watch(self) -> None:
        while not self._stop.wait(self.threshold / 4):
            if self._pending:
                stalled = time.monotonic() - self._posted_at
                # A loop that is not running at all (between two runs) is not stalled.
                if stalled >= self.threshold and not self._warned and self.loop.is_running():
                    self._warned = True
                    self._warn(stalled)
                continue
            self._pending = True
            self._warned = False
            self._posted_at = time.monotonic()
            try:
                self.loop.call_soon_threadsafe(self._beat)
            except RuntimeError:
                return  # the loop is closed

    def _warn(self, stalled: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return
        culprit = _culprit(frame)
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        if culprit is None:
            logger.warning(
                "the event loop has not run for %.1f s; it is blocked at %s", stalled, where
            )
            return
        logger.warning(
            "the event loop has not run for %.1f s: %s blocks it (at %s). Every pipeline "
            "waits meanwhile: await instead, or make the method a plain def, which runs "
            "on a thread",
            stalled,
            culprit,
            where,
        )


def _culprit(frame: FrameType | None) -> str | None:
    """The innermost user-code method on the stack: class, method and node."""
    while frame is not None:
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            try:
                owner = frame.f_locals.get("self")
            except Exception:
                owner = None
            if isinstance(owner, _USER_CODE):
                cls = type(owner)
                name = f"{cls.__module__}.{cls.__qualname__}.{code.co_name}"
                node_id = getattr(owner, "id", None)
                if isinstance(owner, Service) and node_id:
                    return f"{name} of node {node_id}"
                return name
        frame = frame.f_back
    return None
