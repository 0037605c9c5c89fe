-- A node step writes two to five events, each a row of its own and an entry
-- of events_root at the place of its run's id, which is a random place: the
-- most rows and the most pages of the log of every commit were events'. A
-- row now holds the events one commit made in one run, in order: ``items``
-- is a JSON array of [node_id, kind, state, data, time]. Event ids do not
-- change: the row's id is its first event's, the others follow it (id + 1,
-- id + 2, ... up to id + count - 1), and the next row goes on from there.
-- ``time`` is the newest event's, which the purges go by. An item's time may
-- be null: the row's (each row moved here holds one event, and SQLite's JSON
-- would round its time to 15 digits).
CREATE TABLE events_by_commit (
    id      INTEGER PRIMARY KEY,
    root_id TEXT NOT NULL,
    count   INTEGER NOT NULL,
    items   TEXT NOT NULL,
    time    REAL NOT NULL
);
INSERT INTO events_by_commit (id, root_id, count, items, time)
SELECT id, root_id, 1, json_array(json_array(node_id, kind, state, data, NULL)), time
FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_by_commit RENAME TO events;
CREATE INDEX events_root ON events (root_id, id);
