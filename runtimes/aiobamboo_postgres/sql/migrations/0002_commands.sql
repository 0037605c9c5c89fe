-- Operations sent to the worker that holds a run by another process.
-- status: pending (sent), taken (its owner is applying it), done (ok and
-- message set; message is the refusal as JSON {"type", "message"}), cancelled
-- (the sender stopped waiting before it was taken).
CREATE TABLE commands (
    id           TEXT PRIMARY KEY,
    root_id      TEXT NOT NULL,
    op           TEXT NOT NULL,
    args         TEXT NOT NULL,
    status       TEXT NOT NULL,
    ok           BOOLEAN NOT NULL DEFAULT FALSE,
    message      TEXT NOT NULL DEFAULT '',
    created_time DOUBLE PRECISION NOT NULL
);
CREATE INDEX commands_pending ON commands (root_id) WHERE status = 'pending';
CREATE INDEX runs_owner ON runs (owner) WHERE status = 'active';
