"""State names and the transition table shared by nodes and pipelines.

The names are the original's; every member is a ``str``
so a state compares equal to its name and serialises as itself.
"""

from __future__ import annotations

import enum

__all__ = [
    "ARCHIVED_STATES",
    "BLOCKED",
    "CREATED",
    "FAILED",
    "FINISHED",
    "INVERTED_TRANSITION",
    "LOOP_READY",
    "READY",
    "REVOKED",
    "ROLLING_BACK",
    "ROLL_BACK_FAILED",
    "ROLL_BACK_SUCCESS",
    "RUNNING",
    "SLEEP_STATES",
    "SUSPENDED",
    "TRANSITIONS",
    "StateType",
    "can_transit",
]


class StateType(enum.StrEnum):
    CREATED = "CREATED"
    READY = "READY"
    LOOP_READY = "LOOP_READY"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    BLOCKED = "BLOCKED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    REVOKED = "REVOKED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLL_BACK_SUCCESS = "ROLL_BACK_SUCCESS"
    ROLL_BACK_FAILED = "ROLL_BACK_FAILED"


CREATED = StateType.CREATED
READY = StateType.READY
LOOP_READY = StateType.LOOP_READY
RUNNING = StateType.RUNNING
SUSPENDED = StateType.SUSPENDED
BLOCKED = StateType.BLOCKED
FINISHED = StateType.FINISHED
FAILED = StateType.FAILED
REVOKED = StateType.REVOKED
ROLLING_BACK = StateType.ROLLING_BACK
ROLL_BACK_SUCCESS = StateType.ROLL_BACK_SUCCESS
ROLL_BACK_FAILED = StateType.ROLL_BACK_FAILED

#: The original's table: one table for nodes and pipelines.
TRANSITIONS: dict[StateType, frozenset[StateType]] = {
    READY: frozenset({RUNNING, SUSPENDED}),
    LOOP_READY: frozenset({RUNNING, SUSPENDED}),
    RUNNING: frozenset({FINISHED, FAILED, REVOKED, SUSPENDED, ROLLING_BACK}),
    SUSPENDED: frozenset({READY, REVOKED, RUNNING, ROLLING_BACK}),
    BLOCKED: frozenset(),
    FINISHED: frozenset({RUNNING, FAILED, ROLLING_BACK}),
    FAILED: frozenset({READY, FINISHED, LOOP_READY}),
    REVOKED: frozenset(),
    ROLLING_BACK: frozenset({ROLL_BACK_SUCCESS, ROLL_BACK_FAILED}),
    ROLL_BACK_SUCCESS: frozenset({READY, FINISHED}),
    ROLL_BACK_FAILED: frozenset({READY, FINISHED, ROLLING_BACK}),
    CREATED: frozenset(),
}

#: For each target state, the states it may be reached from.
INVERTED_TRANSITION: dict[StateType, frozenset[StateType]] = {
    target: frozenset(src for src, targets in TRANSITIONS.items() if target in targets)
    for target in StateType
}

ARCHIVED_STATES = frozenset({FINISHED, FAILED, REVOKED})
SLEEP_STATES = frozenset({SUSPENDED, REVOKED})


def can_transit(from_state: str | None, to_state: str) -> bool:
    """Whether ``from_state -> to_state`` is allowed; creating a state (``None``) always is."""
    if from_state is None:
        return True
    return StateType(to_state) in TRANSITIONS[StateType(from_state)]
