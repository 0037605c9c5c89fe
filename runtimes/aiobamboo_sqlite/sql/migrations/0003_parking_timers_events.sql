-- Parked runs, durable timers and the event log.

-- parked: 1 while the run waits on something outside the engine and is in no
-- worker's memory; a due timer, a command or an operation claims it again.
ALTER TABLE runs ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;

-- A run's timers (kind 'poll': a polling activity's next schedule()).
-- due_time: POSIX seconds by the engine's clock; NULL once fired or cancelled.
CREATE TABLE timers (
    id       TEXT PRIMARY KEY,
    root_id  TEXT NOT NULL,
    node_id  TEXT NOT NULL,
    version  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    due_time REAL
);
CREATE INDEX timers_due ON timers (due_time) WHERE due_time IS NOT NULL;
CREATE INDEX timers_root ON timers (root_id);

-- Committed events for subscribers in any process; ids grow in commit order
-- (AUTOINCREMENT: never reused, even after the newest rows were purged).
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    root_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    state   TEXT NOT NULL,
    data    TEXT NOT NULL,
    time    REAL NOT NULL
);
CREATE INDEX events_root ON events (root_id, id);
