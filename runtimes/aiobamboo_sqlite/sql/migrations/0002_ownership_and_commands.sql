-- Runs held by a worker (owner, lease_until) and operations sent to the
-- holder of a run by another process (commands).
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until REAL;

-- status: pending (sent), taken (its owner is applying it), done (ok and
-- message set: message is the refusal as JSON {"type", "message"}), cancelled
-- (the sender stopped waiting before it was taken).
CREATE TABLE commands (
    id           TEXT PRIMARY KEY,
    root_id      TEXT NOT NULL,
    op           TEXT NOT NULL,
    args         TEXT NOT NULL,
    status       TEXT NOT NULL,
    ok           INTEGER NOT NULL DEFAULT 0,
    message      TEXT NOT NULL DEFAULT '',
    created_time REAL NOT NULL
);
CREATE INDEX commands_pending ON commands (root_id) WHERE status = 'pending';
