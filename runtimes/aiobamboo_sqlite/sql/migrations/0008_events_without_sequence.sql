-- AUTOINCREMENT writes its counter (a row of sqlite_sequence, a page of its
-- own) at every commit that inserts events, and nearly every node step does.
-- A plain INTEGER PRIMARY KEY hands out the highest id plus one, which grows
-- in commit order as well, but would hand out again the ids of the newest
-- rows once they are deleted; a subscriber resumes from the last id it saw,
-- so an id must never come back. The purges are the only deletes: each
-- first records the highest id given so far in events_high (one row), and
-- an insert goes on from there while no row holds a higher id.
CREATE TABLE events_high (id INTEGER NOT NULL);
INSERT INTO events_high (id)
SELECT coalesce(max(id), 0) FROM (
    SELECT seq AS id FROM sqlite_sequence WHERE name = 'events'
    UNION ALL SELECT max(id) FROM events
);

CREATE TABLE events_plain (
    id      INTEGER PRIMARY KEY,
    root_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    state   TEXT NOT NULL,
    data    TEXT NOT NULL,
    time    REAL NOT NULL
);
INSERT INTO events_plain (id, root_id, node_id, kind, state, data, time)
SELECT id, root_id, node_id, kind, state, data, time FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_plain RENAME TO events;
CREATE INDEX events_root ON events (root_id, id);
