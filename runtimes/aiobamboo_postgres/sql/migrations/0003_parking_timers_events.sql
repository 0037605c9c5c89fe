-- Parked runs, durable timers and the event log.

-- parked: TRUE while the run waits on something outside the engine and is in
-- no worker's memory; a due timer, a command or an operation claims it again.
ALTER TABLE runs ADD COLUMN parked BOOLEAN NOT NULL DEFAULT FALSE;

-- Claiming without run ids looks at runs that are not parked only, oldest
-- first; parked runs are found from their due timers and pending commands.
DROP INDEX runs_active;
CREATE INDEX runs_ready ON runs (created_time) WHERE status = 'active' AND NOT parked;

-- A run's timers (kind 'poll': a polling activity's next schedule()).
-- due_time: POSIX seconds by the engine's clock; NULL once fired or cancelled.
CREATE TABLE timers (
    id       TEXT PRIMARY KEY,
    root_id  TEXT NOT NULL,
    node_id  TEXT NOT NULL,
    version  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    due_time DOUBLE PRECISION
);
CREATE INDEX timers_due ON timers (due_time) WHERE due_time IS NOT NULL;
CREATE INDEX timers_root ON timers (root_id);

-- Committed events for subscribers in any process. Writers take an advisory
-- lock before their events get ids and hold it until commit, so ids grow in
-- commit order. That needs the identity's default CACHE 1: a session caching
-- ids would hand out numbers older than other sessions' committed ones.
CREATE TABLE events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    root_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    state   TEXT NOT NULL,
    data    TEXT NOT NULL,
    time    DOUBLE PRECISION NOT NULL
);
CREATE INDEX events_root ON events (root_id, id);
