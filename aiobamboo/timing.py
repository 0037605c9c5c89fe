"""What a service activity's tree says about time: its timeout, retry policy and timer events.

Pure: the builder writes these fields, the validator checks them (naming the
node), and the engine reads them into :class:`NodeTiming`. The tree fields:

- ``"timeout": seconds`` (the original's field), enforced with the forced-fail
  action; or the original's ``"timeout_config": {"enable", "seconds", "action"}``
  (``action``: ``forced_fail`` or ``forced_fail_and_skip``), which wins when enabled;
- ``"retry_policy": {"max_attempts", "delay", "backoff", "max_delay"}``;
- ``"events": {"timer_events": [{"enable", "timer_type", "defined", "action"}]}``,
  the original's boundary timer events: ``timer_type`` is ``time_date`` (an ISO
  8601 date and time), ``time_duration`` (an ISO 8601 duration) or ``time_cycle``
  (``R5/PT10S``: five times, ten seconds apart; ``R/P1D``: every day, without end).

ISO 8601 is read with ``isodate`` (the ``timers`` extra), needed only by trees
with timer events.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

__all__ = [
    "BACKOFFS",
    "FORCED_FAIL",
    "FORCED_FAIL_AND_SKIP",
    "TIMER_TYPES",
    "NodeTiming",
    "RetryPolicy",
    "TimerEvent",
    "TimingError",
    "parse_timing",
]

#: Fail the node as ``forced_fail_activity`` does.
FORCED_FAIL = "forced_fail"
#: Fail the node, then skip it: the pipeline goes on past it.
FORCED_FAIL_AND_SKIP = "forced_fail_and_skip"
TIMEOUT_ACTIONS = (FORCED_FAIL, FORCED_FAIL_AND_SKIP)
#: The original's names for the two built-in timer event actions.
_ACTION_ALIASES = {
    "bamboo_engine_forced_fail": FORCED_FAIL,
    "bamboo_engine_forced_fail_and_skip": FORCED_FAIL_AND_SKIP,
}

TIME_DATE = "time_date"
TIME_DURATION = "time_duration"
TIME_CYCLE = "time_cycle"
TIMER_TYPES = (TIME_DATE, TIME_DURATION, TIME_CYCLE)

FIXED: Final = "fixed"
EXPONENTIAL: Final = "exponential"
BACKOFFS = (FIXED, EXPONENTIAL)

_CYCLE = re.compile(r"^R(\d*)/(.+)$")


class TimingError(ValueError):
    """A timeout, retry policy or timer event the engine cannot use."""


def _number(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimingError(f"{what} must be a number of seconds, got {value!r:.100}")
    if value < 0 or (positive and value == 0):
        raise TimingError(f"{what} must be {'positive' if positive else 'zero or more'}")
    return float(value)


@attrs.frozen
class RetryPolicy:
    """Retry a failed activity automatically: at most ``max_attempts`` attempts in all.

    The n-th automatic retry waits ``delay`` seconds (``backoff="fixed"``) or
    ``delay * 2 ** (n - 1)`` (``"exponential"``), at most ``max_delay`` if given.
    """

    max_attempts: int
    delay: float = 0.0
    backoff: Literal["fixed", "exponential"] = FIXED
    max_delay: float | None = None

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TimingError(f"max_attempts must be an integer, got {self.max_attempts!r:.100}")
        if self.max_attempts < 1:
            raise TimingError("max_attempts must be 1 or more (the first attempt counts)")
        _number(self.delay, "delay")
        if self.backoff not in BACKOFFS:
            raise TimingError(f"backoff must be one of {', '.join(BACKOFFS)}, got {self.backoff!r}")
        if self.max_delay is not None:
            _number(self.max_delay, "max_delay")

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before automatic retry number ``retry`` (1 for the first)."""
        delay = float(self.delay)
        if self.backoff == EXPONENTIAL:
            # Capped before it overflows: 2 ** 1100 is no longer a float.
            delay = delay * 2.0 ** min(retry - 1, 1000) if delay else 0.0
        if self.max_delay is not None:
            delay = min(delay, float(self.max_delay))
        return delay

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> RetryPolicy:
        if not isinstance(raw, Mapping):
            raise TimingError(f"'retry_policy' must be a dict, got {type(raw).__name__}")
        unknown = set(raw) - {"max_attempts", "delay", "backoff", "max_delay"}
        if unknown:
            raise TimingError(f"'retry_policy' has unknown keys {sorted(unknown)}")
        if "max_attempts" not in raw:
            raise TimingError("'retry_policy' needs 'max_attempts'")
        return cls(
            max_attempts=raw["max_attempts"],
            delay=raw.get("delay", 0.0),
            backoff=raw.get("backoff", FIXED),
            max_delay=raw.get("max_delay"),
        )


@attrs.frozen
class TimerEvent:
    """A boundary timer event of an activity, as the builder takes it.

    Armed when the activity starts running, dropped when it stops; when it
    fires, ``action`` runs: ``forced_fail``, ``forced_fail_and_skip`` or the
    ``code`` of a registered :class:`aiobamboo.component.TimerEventAction`.
    """

    timer_type: Literal["time_date", "time_duration", "time_cycle"]
    defined: str
    action: str = FORCED_FAIL
    enable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "enable": self.enable,
            "timer_type": self.timer_type,
            "defined": self.defined,
            "action": self.action,
        }


@attrs.frozen
class ParsedTimerEvent:
    """A timer event read from the tree: when it fires first, how often, what it does."""

    index: int
    timer_type: str
    action: str
    #: POSIX seconds, for ``time_date``.
    date: float | None = None
    #: The duration (``datetime.timedelta`` or ``isodate.Duration``: months and years).
    duration: Any = None
    #: How many times it fires; None: without end.
    repetitions: int | None = 1

    def due_after(self, now: float) -> float:
        """When it fires next, counted from ``now`` (POSIX seconds)."""
        if self.date is not None:
            return self.date
        if isinstance(self.duration, datetime.timedelta):
            return now + self.duration.total_seconds()
        # Months and years: counted on the calendar, from the UTC date of ``now``.
        start = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
        try:
            return float((start + self.duration).timestamp())
        except (OverflowError, ValueError):
            return math.inf  # beyond the calendar: it never comes


@attrs.frozen
class NodeTiming:
    """Everything time-bound about one activity."""

    timeout: float | None = None
    timeout_action: str = FORCED_FAIL
    retry: RetryPolicy | None = None
    events: tuple[ParsedTimerEvent, ...] = ()

    @property
    def arms_when_running(self) -> bool:
        return self.timeout is not None or bool(self.events)


def builtin_action(action: str) -> str | None:
    """``forced_fail`` or ``forced_fail_and_skip`` for a built-in action name, else None."""
    if action in TIMEOUT_ACTIONS:
        return action
    return _ACTION_ALIASES.get(action)


def _timeout(raw: Mapping[str, Any]) -> tuple[float | None, str]:
    config = raw.get("timeout_config")
    if config is not None:
        if not isinstance(config, Mapping):
            raise TimingError(f"'timeout_config' must be a dict, got {type(config).__name__}")
        if config.get("enable", True):
            action = config.get("action", FORCED_FAIL)
            if action not in TIMEOUT_ACTIONS:
                raise TimingError(
                    f"timeout action must be one of {', '.join(TIMEOUT_ACTIONS)}, "
                    f"got {action!r:.100}"
                )
            seconds = _number(config.get("seconds"), "timeout seconds", positive=True)
            return seconds, action
    timeout = raw.get("timeout")
    # 0 is how some exported trees say "none": the original never enforced the field.
    if timeout is None or timeout == 0:
        return None, FORCED_FAIL
    return _number(timeout, "'timeout'", positive=True), FORCED_FAIL


def _isodate() -> Any:
    try:
        import isodate  # type: ignore[import-untyped]
    except ImportError:
        raise TimingError(
            "timer events need the isodate package: pip install 'aiobamboo[timers]'"
        ) from None
    return isodate


# Trees repeat the same few expressions on many nodes; each is parsed once.
@functools.lru_cache(maxsize=1024)
def _duration(text: str) -> Any:
    isodate = _isodate()
    try:
        duration = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise TimingError(f"{text!r:.100} is not an ISO 8601 duration ({exc})") from None
    if datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC) + duration <= datetime.datetime(
        2000, 1, 1, tzinfo=datetime.UTC
    ):
        raise TimingError(f"{text!r:.100} is not a positive duration")
    return duration


@functools.lru_cache(maxsize=1024)
def _date(text: str) -> float:
    isodate = _isodate()
    try:
        when = isodate.parse_datetime(text)
    except (isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise TimingError(f"{text!r:.100} is not an ISO 8601 date and time ({exc})") from None
    if when.tzinfo is None:
        raise TimingError(f"{text!r:.100} has no time zone (add Z or +hh:mm)")
    return float(when.timestamp())


def _event(index: int, raw: Any) -> ParsedTimerEvent | None:
    if not isinstance(raw, Mapping):
        raise TimingError(f"timer event {index} must be a dict, got {type(raw).__name__}")
    if not raw.get("enable", True):
        return None
    timer_type, defined, action = raw.get("timer_type"), raw.get("defined"), raw.get("action")
    where = f"timer event {index}"
    if timer_type not in TIMER_TYPES:
        raise TimingError(
            f"{where}: 'timer_type' must be one of {', '.join(TIMER_TYPES)}, "
            f"got {timer_type!r:.100}"
        )
    if not isinstance(defined, str) or not defined:
        raise TimingError(f"{where}: 'defined' must be an ISO 8601 string")
    if not isinstance(action, str) or not action:
        raise TimingError(f"{where}: 'action' must be an action name")
    action = builtin_action(action) or action
    try:
        if timer_type == TIME_DATE:
            return ParsedTimerEvent(index, timer_type, action, date=_date(defined))
        if timer_type == TIME_DURATION:
            return ParsedTimerEvent(index, timer_type, action, duration=_duration(defined))
        cycle = _CYCLE.match(defined)
        if cycle is None:
            raise TimingError(f"{defined!r:.100} is not an ISO 8601 cycle (R5/PT10S, R/P1D)")
        count = int(cycle.group(1)) if cycle.group(1) else None
        if count == 0:
            raise TimingError(f"{defined!r:.100} repeats zero times")
        return ParsedTimerEvent(
            index, timer_type, action, duration=_duration(cycle.group(2)), repetitions=count
        )
    except TimingError as exc:
        raise TimingError(f"{where}: {exc}") from None


def parse_timing(raw: Mapping[str, Any]) -> NodeTiming | None:
    """The timing of a ServiceActivity's tree dict; None if it has none.

    Raises :class:`TimingError` saying what is wrong (the validator names the node).
    """
    timeout, action = _timeout(raw)
    retry = None
    if raw.get("retry_policy") is not None:
        retry = RetryPolicy.from_dict(raw["retry_policy"])
    events: list[ParsedTimerEvent] = []
    container = raw.get("events")
    if container is not None:
        if not isinstance(container, Mapping):
            raise TimingError(f"'events' must be a dict, got {type(container).__name__}")
        listed = container.get("timer_events") or []
        if not isinstance(listed, list):
            raise TimingError("'events' 'timer_events' must be a list")
        for index, item in enumerate(listed, start=1):
            parsed = _event(index, item)
            if parsed is not None:
                events.append(parsed)
    if timeout is None and retry is None and not events:
        return None
    return NodeTiming(timeout=timeout, timeout_action=action, retry=retry, events=tuple(events))
