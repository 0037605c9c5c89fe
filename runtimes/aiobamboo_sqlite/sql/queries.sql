-- Named queries of the SQLite runtime. Each block: "-- name: NAME" then a line
-- of description (parameters in order), then the statement.

-- name: last_tree_id
-- (): the highest tree id so far (0: none); in a write transaction, the next
-- ones are free
SELECT coalesce(max(id), 0) FROM trees;

-- name: insert_tree
-- (id, tree, options)
INSERT INTO trees (id, tree, options) VALUES (?, ?, ?);

-- name: insert_run
-- (root_id, tree_id, status, created_time, owner, lease_until)
INSERT INTO runs (root_id, tree_id, status, created_time, owner, lease_until)
VALUES (?, ?, ?, ?, ?, ?);

-- name: insert_node
-- (node_id, root_id)
INSERT INTO nodes (node_id, root_id) VALUES (?, ?);

-- name: set_run_status
-- (status, root_id)
UPDATE runs SET status = ? WHERE root_id = ?;

-- name: drop_processes
-- (root_id): a run that ended keeps no processes
DELETE FROM processes WHERE root_id = ?;

-- name: upsert_state
-- (JSON array of rows, each [node_id, root_id, parent_id, name, state, version, loop, inner_loop, retry, skip, error_ignored, created_time, started_time, archived_time])
INSERT INTO states (node_id, root_id, parent_id, name, state, version, loop, inner_loop, retry, skip, error_ignored, created_time, started_time, archived_time)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]'), json_extract(value, '$[11]'), json_extract(value, '$[12]'), json_extract(value, '$[13]')
FROM json_each(?) WHERE true
ON CONFLICT (node_id) DO UPDATE SET
    root_id = excluded.root_id,
    parent_id = excluded.parent_id,
    name = excluded.name,
    state = excluded.state,
    version = excluded.version,
    loop = excluded.loop,
    inner_loop = excluded.inner_loop,
    retry = excluded.retry,
    skip = excluded.skip,
    error_ignored = excluded.error_ignored,
    created_time = excluded.created_time,
    started_time = excluded.started_time,
    archived_time = excluded.archived_time;

-- name: upsert_execution_data
-- (JSON array of rows, each [node_id, root_id, inputs, outputs])
INSERT INTO execution_data (node_id, root_id, inputs, outputs)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]')
FROM json_each(?) WHERE true
ON CONFLICT (node_id) DO UPDATE SET
    root_id = excluded.root_id,
    inputs = excluded.inputs,
    outputs = excluded.outputs;

-- name: upsert_node_data
-- (JSON array of rows, each [node_id, root_id, inputs])
INSERT INTO node_data (node_id, root_id, inputs)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(?) WHERE true
ON CONFLICT (node_id) DO UPDATE SET
    root_id = excluded.root_id,
    inputs = excluded.inputs;

-- name: upsert_context
-- (JSON array of rows, each [pipeline_id, key, root_id, type, value, custom_type])
INSERT INTO context (pipeline_id, key, root_id, type, value, custom_type)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(?) WHERE true
ON CONFLICT (pipeline_id, key) DO UPDATE SET
    root_id = excluded.root_id,
    type = excluded.type,
    value = excluded.value,
    custom_type = excluded.custom_type;

-- name: upsert_process
-- (JSON array of rows, each [id, root_id, parent_id, current_node_id, destination_id, stack, status, suspended_by, children, acks]):
-- a process id is new for each process of a run, so its root_id is set once; leaving it out
-- of the update spares rewriting processes_root at every step
INSERT INTO processes (id, root_id, parent_id, current_node_id, destination_id, stack, status, suspended_by, children, acks)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), json_extract(value, '$[9]')
FROM json_each(?) WHERE true
ON CONFLICT (id) DO UPDATE SET
    parent_id = excluded.parent_id,
    current_node_id = excluded.current_node_id,
    destination_id = excluded.destination_id,
    stack = excluded.stack,
    status = excluded.status,
    suspended_by = excluded.suspended_by,
    children = excluded.children,
    acks = excluded.acks;

-- name: upsert_schedule
-- (JSON array of rows, each [id, root_id, node_id, version, type, process_id, finished, expired, times])
INSERT INTO schedules (id, root_id, node_id, version, type, process_id, finished, expired, times)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]')
FROM json_each(?) WHERE true
ON CONFLICT (id) DO UPDATE SET
    root_id = excluded.root_id,
    node_id = excluded.node_id,
    version = excluded.version,
    type = excluded.type,
    process_id = excluded.process_id,
    finished = excluded.finished,
    expired = excluded.expired,
    times = excluded.times;

-- name: upsert_callback
-- (JSON array of rows, each [id, root_id, node_id, version, data, consumed, created_time])
INSERT INTO callbacks (id, root_id, node_id, version, data, consumed, created_time)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]')
FROM json_each(?) WHERE true
ON CONFLICT (id) DO UPDATE SET
    root_id = excluded.root_id,
    node_id = excluded.node_id,
    version = excluded.version,
    data = excluded.data,
    consumed = excluded.consumed,
    created_time = excluded.created_time;

-- name: insert_history
-- (JSON array of rows, each [id, root_id, node_id, started_time, archived_time, loop, skip, retry, version, inputs, outputs, created_time])
INSERT INTO histories (id, root_id, node_id, started_time, archived_time, loop, skip, retry, version, inputs, outputs, created_time)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]'), json_extract(value, '$[11]')
FROM json_each(?) WHERE true;

-- name: upsert_timer
-- (JSON array of rows, each [id, root_id, node_id, version, kind, due_time])
INSERT INTO timers (id, root_id, node_id, version, kind, due_time)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(?) WHERE true
ON CONFLICT (id) DO UPDATE SET
    root_id = excluded.root_id,
    node_id = excluded.node_id,
    version = excluded.version,
    kind = excluded.kind,
    due_time = excluded.due_time;

-- name: insert_first_events
-- (root_id, count, items, time): a transaction's first row of events, its id
-- after the newest row's last event, or after the highest id ever given
-- (events_high) when a purge removed the newest rows
INSERT INTO events (id, root_id, count, items, time)
VALUES (
    max(
        coalesce((SELECT id + count FROM events ORDER BY id DESC LIMIT 1), 1),
        coalesce((SELECT id + 1 FROM events_high), 1)
    ),
    ?, ?, ?, ?
);

-- name: insert_events
-- (JSON array of rows, each [id, root_id, count, items, time]): the events of
-- one run in one commit (items: a JSON array of [node_id, kind, state, data,
-- time], time null for the row's own); ids going on from the first row's,
-- each after the events of the row before
INSERT INTO events (id, root_id, count, items, time)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(?) WHERE true;

-- name: remember_event_high
-- (): before a purge deletes events, the highest id given so far
UPDATE events_high SET id = max(
    id, coalesce((SELECT id + count - 1 FROM events ORDER BY id DESC LIMIT 1), 0)
);

-- name: drop_timers
-- (root_id): a run that ended keeps no timers
DELETE FROM timers WHERE root_id = ?;

-- name: timers_by_root
-- (root_id): the run's timers still due
SELECT id, root_id, node_id, version, kind, due_time FROM timers
WHERE root_id = ? AND due_time IS NOT NULL;

-- name: read_events
-- (after, rows): the rows holding the events after ``after``, from the one
-- holding event ``after`` itself (its earlier events are skipped by the reader)
SELECT root_id, count, items, time, id FROM events
WHERE id >= coalesce((SELECT id FROM events WHERE id <= ? ORDER BY id DESC LIMIT 1), 0)
ORDER BY id LIMIT ?;

-- name: read_events_of_root
-- (root_id, root_id, after, rows): as read_events, for one run
SELECT root_id, count, items, time, id FROM events
WHERE root_id = ? AND id >= coalesce(
    (SELECT id FROM events WHERE root_id = ? AND id <= ? ORDER BY id DESC LIMIT 1), 0
)
ORDER BY id LIMIT ?;

-- name: last_event_id
-- ()
SELECT coalesce((SELECT id + count - 1 FROM events ORDER BY id DESC LIMIT 1), 0);

-- name: purge_events
-- (before): the oldest rows of events, a thousand at a time, while their
-- newest event is older than before; the number of events of each row deleted
DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT 1000) AND time < ?
RETURNING count;

-- Loading several runs at once: (JSON array of root ids); rows grouped by the
-- root id each starts with.

-- name: runs_many
SELECT r.root_id, r.root_id, t.tree, t.options, r.status, r.created_time
FROM runs r JOIN trees t ON t.id = r.tree_id
WHERE r.root_id IN (SELECT value FROM json_each(?));

-- name: states_many
SELECT n.root_id, s.* FROM nodes n JOIN states s ON s.node_id = n.node_id
WHERE n.root_id IN (SELECT value FROM json_each(?));

-- name: execution_data_many
SELECT n.root_id, e.* FROM nodes n
JOIN execution_data e ON e.node_id = n.node_id AND e.root_id = n.root_id
WHERE n.root_id IN (SELECT value FROM json_each(?));

-- name: node_data_many
SELECT root_id, * FROM node_data WHERE root_id IN (SELECT value FROM json_each(?));

-- name: context_many
SELECT root_id, * FROM context WHERE root_id IN (SELECT value FROM json_each(?));

-- name: processes_many
SELECT root_id, * FROM processes WHERE root_id IN (SELECT value FROM json_each(?));

-- name: schedules_many
SELECT root_id, * FROM schedules WHERE root_id IN (SELECT value FROM json_each(?));

-- name: callbacks_many
SELECT root_id, * FROM callbacks
WHERE root_id IN (SELECT value FROM json_each(?)) AND consumed = 0;

-- name: timers_many
SELECT root_id, id, root_id, node_id, version, kind, due_time FROM timers
WHERE root_id IN (SELECT value FROM json_each(?)) AND due_time IS NOT NULL;

-- name: get_run
-- (root_id)
SELECT r.root_id, t.tree, t.options, r.status, r.created_time
FROM runs r JOIN trees t ON t.id = r.tree_id WHERE r.root_id = ?;

-- name: run_holder
-- (root_id): who holds the run, until when, and whether it is parked
SELECT owner, lease_until, parked FROM runs WHERE root_id = ?;

-- name: active_runs
-- ()
SELECT root_id FROM runs WHERE status = 'active' ORDER BY created_time;

-- name: node_root
-- (node_id)
SELECT root_id FROM nodes WHERE node_id = ?;

-- name: get_state
-- (node_id)
SELECT * FROM states WHERE node_id = ?;

-- name: states_by_root
-- (root_id): found through the run's node ids; appointed pauses (root_id '') are not its
SELECT s.* FROM nodes n JOIN states s ON s.node_id = n.node_id AND s.root_id = n.root_id
WHERE n.root_id = ? ORDER BY s.created_time;

-- name: states_of_run
-- (root_id): states of every node of the run, including appointed pauses
SELECT s.* FROM nodes n JOIN states s ON s.node_id = n.node_id WHERE n.root_id = ?;

-- name: states_by_parent
-- (parent_id): found through the run's node ids, the run being the parent's own or the parent
WITH parent (id) AS (VALUES (?))
SELECT s.* FROM parent, nodes n JOIN states s ON s.node_id = n.node_id
WHERE n.root_id = coalesce((SELECT root_id FROM nodes WHERE node_id = parent.id), parent.id)
  AND s.parent_id = parent.id
ORDER BY s.created_time;

-- name: get_execution_data
-- (node_id)
SELECT * FROM execution_data WHERE node_id = ?;

-- name: execution_data_by_root
-- (root_id): found through the run's node ids
SELECT e.* FROM nodes n JOIN execution_data e ON e.node_id = n.node_id AND e.root_id = n.root_id
WHERE n.root_id = ?;

-- name: get_node_data
-- (node_id)
SELECT * FROM node_data WHERE node_id = ?;

-- name: node_data_by_root
-- (root_id)
SELECT * FROM node_data WHERE root_id = ?;

-- name: context_by_root
-- (root_id)
SELECT * FROM context WHERE root_id = ?;

-- name: processes_by_root
-- (root_id)
SELECT * FROM processes WHERE root_id = ?;

-- name: schedules_by_root
-- (root_id)
SELECT * FROM schedules WHERE root_id = ?;

-- name: callbacks_by_root
-- (root_id)
SELECT * FROM callbacks WHERE root_id = ? AND consumed = 0;

-- name: histories
-- (node_id)
SELECT * FROM histories WHERE node_id = ? ORDER BY created_time;

-- name: histories_loop
-- (node_id, loop)
SELECT * FROM histories WHERE node_id = ? AND loop = ? ORDER BY created_time;

-- name: claim_runs
-- (owner, lease_until, owner, limit): every active run not parked and not held
-- by this owner; the worker holds the file lock, so any other owner is gone
UPDATE runs SET owner = ?, lease_until = ?
WHERE root_id IN (
    SELECT root_id FROM runs
    WHERE status = 'active' AND parked = 0 AND (owner IS NULL OR owner != ?)
    ORDER BY created_time LIMIT ?
)
RETURNING root_id;

-- name: claim_woken
-- (owner, lease_until, now, limit): parked runs with a timer due or a command pending
-- The wake-ups drive the join (CROSS JOIN fixes the order in SQLite): there are
-- few of them, and the parked runs may be a great many.
UPDATE runs SET owner = ?, lease_until = ?, parked = 0
WHERE root_id IN (
    SELECT r.root_id
    FROM (
        SELECT root_id FROM timers WHERE due_time IS NOT NULL AND due_time <= ?
        UNION
        SELECT root_id FROM commands WHERE status = 'pending'
    ) AS w CROSS JOIN runs AS r
    WHERE r.root_id = w.root_id AND r.parked = 1 AND r.status = 'active'
    LIMIT ?
)
RETURNING root_id;

-- name: park_run
-- (root_id, owner, root_id): release a held run as parked, unless a command waits
-- for it or is being applied to it (taken by this holder: a claim would requeue it)
UPDATE runs SET owner = NULL, lease_until = NULL, parked = 1
WHERE root_id = ? AND owner = ? AND status = 'active'
  AND NOT EXISTS (SELECT 1 FROM commands WHERE root_id = ? AND status IN ('pending', 'taken'))
RETURNING root_id;

-- name: renew_leases
-- (lease_until, owner): every run this owner holds
UPDATE runs SET lease_until = ? WHERE owner = ? AND status = 'active' RETURNING root_id;

-- name: release_run
-- (owner, root_id)
UPDATE runs SET owner = NULL, lease_until = NULL WHERE owner = ? AND root_id = ?;

-- name: insert_command
-- (id, root_id, op, args, created_time)
INSERT INTO commands (id, root_id, op, args, status, created_time) VALUES (?, ?, ?, ?, 'pending', ?);

-- name: pending_command_runs
-- (owner): the runs this owner holds that have pending commands
SELECT DISTINCT c.root_id FROM commands c JOIN runs r ON r.root_id = c.root_id
WHERE c.status = 'pending' AND r.owner = ?;

-- name: take_commands
-- (root_id): the pending commands of one run, marked taken
UPDATE commands SET status = 'taken' WHERE status = 'pending' AND root_id = ?
RETURNING id, root_id, op, args, status, ok, message, created_time;

-- name: requeue_commands
-- (root_id): commands of a run that its previous holder took and never answered
UPDATE commands SET status = 'pending' WHERE status = 'taken' AND root_id = ?;

-- name: complete_command
-- (ok, message, id)
UPDATE commands SET status = 'done', ok = ?, message = ? WHERE id = ?;

-- name: get_command
-- (id)
SELECT id, root_id, op, args, status, ok, message, created_time FROM commands WHERE id = ?;

-- name: cancel_command
-- (id)
UPDATE commands SET status = 'cancelled' WHERE id = ? AND status = 'pending' RETURNING id;

-- name: deliverable_callbacks
-- (JSON array of [node_id, version]): one row, a JSON array with per callback
-- [its position, the root id of its node's run (null: no such node), 1 when a
-- single callback may be stored for it now]. It may when the run is parked and
-- held by nobody, a one-callback schedule of that version waits (neither
-- finished nor expired), a process sleeps at the node, its state is RUNNING
-- with that version, and no callback of that schedule is stored unconsumed.
-- One row for them all: each row stepped costs the connection's thread the
-- GIL once more, which it waits for while the event loop is busy.
SELECT json_group_array(json_array(g.key, n.root_id, n.root_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM runs AS r
    WHERE r.root_id = n.root_id AND r.parked = 1 AND r.owner IS NULL AND r.status = 'active'
      AND EXISTS (SELECT 1 FROM schedules AS s WHERE s.node_id = g.node_id
                  AND s.version = g.version AND s.type = 1 AND s.finished = 0 AND s.expired = 0)
      AND EXISTS (SELECT 1 FROM processes AS p WHERE p.root_id = n.root_id
                  AND p.current_node_id = g.node_id AND p.status = 'sleeping')
      AND EXISTS (SELECT 1 FROM states AS t WHERE t.node_id = g.node_id
                  AND t.version = g.version AND t.state = 'RUNNING')
      AND NOT EXISTS (SELECT 1 FROM callbacks AS c WHERE c.root_id = n.root_id
                      AND c.node_id = g.node_id AND c.version = g.version AND c.consumed = 0)
)))
FROM (
    SELECT key, json_extract(value, '$[0]') AS node_id, json_extract(value, '$[1]') AS version
    FROM json_each(?)
) AS g
LEFT JOIN nodes AS n ON n.node_id = g.node_id;

-- name: unpark_runs
-- (JSON array of root ids): a worker claims them now, and finds their callbacks
UPDATE runs SET parked = 0 WHERE root_id IN (SELECT value FROM json_each(?));

-- name: claim_run
-- (owner, lease_until, root_id, owner): parked or not
UPDATE runs SET owner = ?, lease_until = ?, parked = 0
WHERE root_id = ? AND status = 'active' AND (owner IS NULL OR owner != ?)
RETURNING root_id;

-- Listing and retention.

-- name: list_runs
-- (created_after, created_before, before_time, before_id, state, state, limit):
-- newest first; the bounds are numbers (infinities when unbounded)
SELECT r.root_id, r.status, COALESCE(s.state, ''),
       COALESCE(json_extract(t.tree, '$.name'), ''), r.created_time,
       s.started_time, s.archived_time
FROM runs r JOIN trees t ON t.id = r.tree_id LEFT JOIN states s ON s.node_id = r.root_id
WHERE r.created_time >= ? AND r.created_time < ?
  AND (r.created_time, r.root_id) < (?, ?)
  AND (? IS NULL OR s.state = ?)
ORDER BY r.created_time DESC, r.root_id DESC
LIMIT ?;

-- name: purgeable_runs
-- (before, before, limit): ended runs whose root ended before `before`, oldest first
SELECT r.root_id FROM runs r LEFT JOIN states s ON s.node_id = r.root_id
WHERE r.status <> 'active' AND r.created_time < ?
  AND COALESCE(s.archived_time, r.created_time) < ?
ORDER BY r.created_time
LIMIT ?;

-- name: purge_states
-- (JSON array of root ids): appointed pauses (root_id '') are found through nodes
DELETE FROM states WHERE node_id IN (
    SELECT node_id FROM nodes WHERE root_id IN (SELECT value FROM json_each(?))
);

-- name: purge_trees
-- (JSON array of root ids): before the runs that point to them
DELETE FROM trees WHERE id IN (
    SELECT tree_id FROM runs WHERE root_id IN (SELECT value FROM json_each(?))
);

-- name: purge_execution_data
-- (JSON array of root ids): found through nodes (no index by root_id)
DELETE FROM execution_data WHERE node_id IN (
    SELECT node_id FROM nodes WHERE root_id IN (SELECT value FROM json_each(?))
);
