-- Named queries of the PostgreSQL runtime. Each block: "-- name: NAME", then
-- description lines listing the $n parameters in order, then the statement.
-- {schema} is replaced by the runtime's quoted schema identifier when the file
-- is loaded; values are always passed as parameters.

-- name: insert_run
-- ($1 root_id, $2 tree, $3 options, $4 status, $5 created_time, $6 node_ids text[],
--  $7 owner (NULL: a client's run, for any worker to claim), $8 lease seconds)
-- Inserts the run and its node ids unless the run exists. Returns inserted
-- (this call created the run), nodes (node ids inserted; fewer than given
-- means another run owns some) and same (a run with this id, tree and
-- created_time existed already: a retry of a commit whose outcome was lost).
WITH run AS (
    INSERT INTO {schema}.runs (root_id, tree, options, status, created_time, owner, lease_until)
    VALUES (
        $1::text, $2::text, $3::text, $4::text, $5::float8, $7::text,
        CASE WHEN $7::text IS NULL THEN NULL
             ELSE extract(epoch FROM clock_timestamp()) + $8::float8 END
    )
    ON CONFLICT (root_id) DO NOTHING
    RETURNING root_id
), new_nodes AS (
    INSERT INTO {schema}.nodes (node_id, root_id)
    SELECT n, $1::text FROM unnest($6::text[]) AS n WHERE EXISTS (SELECT 1 FROM run)
    ON CONFLICT (node_id) DO NOTHING
    RETURNING node_id
)
SELECT
    EXISTS (SELECT 1 FROM run) AS inserted,
    (SELECT count(*) FROM new_nodes) AS nodes,
    EXISTS (
        SELECT 1 FROM {schema}.runs
        WHERE root_id = $1::text AND tree = $2::text AND created_time = $5::float8
    ) AS same;

-- name: insert_runs
-- ($1 root_ids text[], $2 trees text[], $3 options text[], $4 statuses text[],
--  $5 created_times float8[], $6 node_ids text[], $7 the root id of each node id,
--  $8 owner (NULL: clients' runs, for any worker to claim), $9 lease seconds)
-- insert_run for several runs at once. Returns inserted (the root ids of the
-- runs this statement created) and nodes (how many node ids it inserted); a
-- run that exists already, or a node id taken (by another run or by an
-- earlier run of the same call), shows as fewer than given. The caller then
-- undoes what was inserted (undo_runs) and inserts the runs one by one.
WITH run AS (
    INSERT INTO {schema}.runs (root_id, tree, options, status, created_time, owner, lease_until)
    SELECT r.root_id, r.tree, r.options, r.status, r.created_time, $8::text,
           CASE WHEN $8::text IS NULL THEN NULL
                ELSE extract(epoch FROM clock_timestamp()) + $9::float8 END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])
        AS r (root_id, tree, options, status, created_time)
    ON CONFLICT (root_id) DO NOTHING
    RETURNING root_id
), new_nodes AS (
    INSERT INTO {schema}.nodes (node_id, root_id)
    SELECT n.node_id, n.root_id FROM unnest($6::text[], $7::text[]) AS n (node_id, root_id)
    WHERE n.root_id IN (SELECT root_id FROM run)
    ON CONFLICT (node_id) DO NOTHING
    RETURNING node_id
)
SELECT
    ARRAY(SELECT root_id FROM run) AS inserted,
    (SELECT count(*) FROM new_nodes) AS nodes;

-- name: undo_runs
-- ($1 root_ids text[]): removes runs that this transaction created, with their node ids
WITH gone AS (DELETE FROM {schema}.nodes WHERE root_id = ANY($1::text[]))
DELETE FROM {schema}.runs WHERE root_id = ANY($1::text[]);

-- Parts of the statement a group commit composes (write_group): one part per
-- table the group touches, parameters numbered from $1 within each part; the
-- composer renumbers them and puts "{ok_where}" or "{ok_and}" where the part
-- must also check the fence ("WHERE (SELECT ok FROM fence)"-style: every run
-- of the group is still held by the writer, or nothing is written).
-- The rows of a table come as ONE parameter, a JSON array of rows, each row an
-- array of the columns in the order of _write.parts, expanded here: the
-- client encodes one text instead of an array per column (asyncpg checks
-- every element of an array), and JSON numbers keep their exact digits, so
-- floats arrive as they were. Sibling CTEs see the same snapshot and must not
-- touch a row twice: the caller keeps one row per key, and the processes and
-- timers of an ended run are deleted except those upserted by the same
-- statement. Schedules conflict on (node_id, version), like the SQLite
-- runtime's INSERT OR REPLACE, which replaces a row matching either unique key.
-- name: fence
-- ($1 root_ids text[], $2 owner): whether the writer holds every run of its group
fence AS (
    SELECT count(*) = cardinality($1::text[]) AS ok
    FROM (
        SELECT 1 FROM {schema}.runs
        WHERE root_id = ANY($1::text[]) AND owner = $2::text
        FOR SHARE
    ) AS held
)

-- name: part_states
-- ($1 rows: node_id, root_id, parent_id, name, state, version, loop, inner_loop,
--  retry, skip, error_ignored, created_time, started_time, archived_time)
    INSERT INTO {schema}.states AS t (
        node_id, root_id, parent_id, name, state, version, loop, inner_loop, retry,
        skip, error_ignored, created_time, started_time, archived_time)
    SELECT
        r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, (r->>6)::int, (r->>7)::int, (r->>8)::int,
        (r->>9)::bool, (r->>10)::bool, (r->>11)::float8, (r->>12)::float8, (r->>13)::float8
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (node_id) DO UPDATE SET
        root_id = EXCLUDED.root_id, parent_id = EXCLUDED.parent_id, name = EXCLUDED.name,
        state = EXCLUDED.state, version = EXCLUDED.version, loop = EXCLUDED.loop,
        inner_loop = EXCLUDED.inner_loop, retry = EXCLUDED.retry, skip = EXCLUDED.skip,
        error_ignored = EXCLUDED.error_ignored, created_time = EXCLUDED.created_time,
        started_time = EXCLUDED.started_time, archived_time = EXCLUDED.archived_time

-- name: part_execution_data
-- ($1 rows: node_id, root_id, inputs, outputs)
    INSERT INTO {schema}.execution_data AS t (node_id, root_id, inputs, outputs)
    SELECT
        r->>0, r->>1, r->>2, r->>3
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (node_id) DO UPDATE SET
        root_id = EXCLUDED.root_id, inputs = EXCLUDED.inputs, outputs = EXCLUDED.outputs

-- name: part_node_data
-- ($1 rows: node_id, root_id, inputs)
    INSERT INTO {schema}.node_data AS t (node_id, root_id, inputs)
    SELECT
        r->>0, r->>1, r->>2
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (node_id) DO UPDATE SET root_id = EXCLUDED.root_id, inputs = EXCLUDED.inputs

-- name: part_context
-- ($1 rows: pipeline_id, key, root_id, type, value, custom_type)
    INSERT INTO {schema}.context AS t (pipeline_id, key, root_id, type, value, custom_type)
    SELECT
        r->>0, r->>1, r->>2, (r->>3)::int, r->>4, r->>5
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (pipeline_id, key) DO UPDATE SET
        root_id = EXCLUDED.root_id, type = EXCLUDED.type, value = EXCLUDED.value,
        custom_type = EXCLUDED.custom_type

-- name: part_processes
-- ($1 rows: id, root_id, parent_id, current_node_id, destination_id, stack,
--  status, suspended_by, children, acks)
    INSERT INTO {schema}.processes AS t (
        id, root_id, parent_id, current_node_id, destination_id, stack, status,
        suspended_by, children, acks)
    SELECT
        r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, r->>9
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (id) DO UPDATE SET
        root_id = EXCLUDED.root_id, parent_id = EXCLUDED.parent_id,
        current_node_id = EXCLUDED.current_node_id, destination_id = EXCLUDED.destination_id,
        stack = EXCLUDED.stack, status = EXCLUDED.status, suspended_by = EXCLUDED.suspended_by,
        children = EXCLUDED.children, acks = EXCLUDED.acks

-- name: part_schedules
-- ($1 rows: id, root_id, node_id, version, type, process_id, finished, expired, times)
    INSERT INTO {schema}.schedules AS t (
        id, root_id, node_id, version, type, process_id, finished, expired, times)
    SELECT
        r->>0, r->>1, r->>2, r->>3, (r->>4)::int, r->>5, (r->>6)::bool, (r->>7)::bool,
        (r->>8)::int
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (node_id, version) DO UPDATE SET
        id = EXCLUDED.id, root_id = EXCLUDED.root_id, type = EXCLUDED.type,
        process_id = EXCLUDED.process_id, finished = EXCLUDED.finished,
        expired = EXCLUDED.expired, times = EXCLUDED.times

-- name: part_callbacks
-- ($1 rows: id, root_id, node_id, version, data, consumed, created_time)
    INSERT INTO {schema}.callbacks AS t (
        id, root_id, node_id, version, data, consumed, created_time)
    SELECT
        r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::bool, (r->>6)::float8
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (id) DO UPDATE SET
        root_id = EXCLUDED.root_id, node_id = EXCLUDED.node_id, version = EXCLUDED.version,
        data = EXCLUDED.data, consumed = EXCLUDED.consumed, created_time = EXCLUDED.created_time

-- name: part_histories
-- ($1 rows: id, root_id, node_id, started_time, archived_time, loop, skip, retry,
--  version, inputs, outputs, created_time)
    INSERT INTO {schema}.histories AS t (
        id, root_id, node_id, started_time, archived_time, loop, skip, retry, version,
        inputs, outputs, created_time)
    SELECT
        r->>0, r->>1, r->>2, (r->>3)::float8, (r->>4)::float8, (r->>5)::int, (r->>6)::bool,
        (r->>7)::int, r->>8, r->>9, r->>10, (r->>11)::float8
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (id) DO NOTHING

-- name: part_run_status
-- ($1 root_ids text[], $2 statuses text[])
    UPDATE {schema}.runs AS r SET status = u.status
    FROM unnest($1::text[], $2::text[]) AS u (root_id, status)
    WHERE r.root_id = u.root_id {ok_and}

-- name: part_drop_processes
-- ($1 ended root_ids text[], $2 process ids upserted by the same statement text[])
-- The rows are found root by root (OFFSET 0 keeps that subquery a lookup per
-- root) and deleted by key: "root_id = ANY ($1)" alone may be planned as a
-- scan of the whole table when the planner has no statistics.
    DELETE FROM {schema}.processes
    WHERE id = ANY (ARRAY(
        SELECT x.id FROM unnest($1::text[]) AS e (root_id)
        CROSS JOIN LATERAL (
            SELECT id FROM {schema}.processes WHERE root_id = e.root_id OFFSET 0
        ) AS x
    ))
      AND root_id = ANY ($1::text[]) AND NOT (id = ANY ($2::text[])) {ok_and}

-- name: part_timers
-- ($1 rows: id, root_id, node_id, version, kind, due_time)
    INSERT INTO {schema}.timers AS t (id, root_id, node_id, version, kind, due_time)
    SELECT
        r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::float8
    FROM jsonb_array_elements($1::jsonb) AS r
    {ok_where}
    ON CONFLICT (id) DO UPDATE SET
        root_id = EXCLUDED.root_id, node_id = EXCLUDED.node_id, version = EXCLUDED.version,
        kind = EXCLUDED.kind, due_time = EXCLUDED.due_time

-- name: part_drop_timers
-- ($1 ended root_ids text[], $2 timer ids upserted by the same statement text[])
-- The rows are found root by root (OFFSET 0 keeps that subquery a lookup per
-- root) and deleted by key: "root_id = ANY ($1)" alone may be planned as a
-- scan of the whole table when the planner has no statistics.
    DELETE FROM {schema}.timers
    WHERE id = ANY (ARRAY(
        SELECT x.id FROM unnest($1::text[]) AS e (root_id)
        CROSS JOIN LATERAL (
            SELECT id FROM {schema}.timers WHERE root_id = e.root_id OFFSET 0
        ) AS x
    ))
      AND root_id = ANY ($1::text[]) AND NOT (id = ANY ($2::text[])) {ok_and}

-- name: part_events
-- ($1 channel to notify at commit, '' for none; $2 rows: root_id, node_id, kind,
--  state, data, time, in commit order)
-- Ids must grow in commit order: a subscriber reads "id > the last id it saw",
-- and would skip for ever an event that commits after a higher id it has read.
-- Sequence values are handed out at insert time, not at commit, so every
-- writer of events takes one advisory lock per schema ({events_lock}) before
-- its rows get ids and keeps it until its transaction ends: the next writer
-- draws its ids only once this one's are visible. Every row is joined with
-- the lock subquery's one row, so the lock is held before the first row
-- reaches the insert, where nextval is evaluated; the ordinality keeps the
-- events in the order given.
    INSERT INTO {schema}.events (root_id, node_id, kind, state, data, time)
    SELECT e.r->>0, e.r->>1, e.r->>2, e.r->>3, e.r->>4, (e.r->>5)::float8
    FROM (
        SELECT
            pg_advisory_xact_lock(({events_lock})::bigint),
            CASE WHEN $1::text <> '' THEN pg_notify($1::text, '') END
    ) AS serialized
    CROSS JOIN jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e (r, n)
    {ok_where}
    ORDER BY e.n

-- name: part_events_again
-- part_events for a group written again after its answer was lost: events
-- stored already (the same content in the same run) are left out. The
-- run's index finds them; retries are rare, so the scan of its events is too.
    INSERT INTO {schema}.events (root_id, node_id, kind, state, data, time)
    SELECT e.root_id, e.node_id, e.kind, e.state, e.data, e.time
    FROM (
        SELECT
            pg_advisory_xact_lock(({events_lock})::bigint),
            CASE WHEN $1::text <> '' THEN pg_notify($1::text, '') END
    ) AS serialized
    CROSS JOIN LATERAL (
        SELECT r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::float8, n
        FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x (r, n)
    ) AS e (root_id, node_id, kind, state, data, time, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM {schema}.events AS x
        WHERE x.root_id = e.root_id AND x.node_id = e.node_id AND x.kind = e.kind
          AND x.state = e.state AND x.time = e.time AND x.data = e.data
    ) {ok_and}
    ORDER BY e.n

-- name: get_run
-- ($1 root_id)
SELECT root_id, tree, options, status, created_time FROM {schema}.runs WHERE root_id = $1;

-- name: run_holder
-- ($1 root_id): who holds the run, until when, and whether it is parked
SELECT owner, lease_until, parked FROM {schema}.runs WHERE root_id = $1;

-- name: active_runs
-- ()
SELECT root_id FROM {schema}.runs WHERE status = 'active' ORDER BY created_time;

-- name: node_root
-- ($1 node_id)
SELECT root_id FROM {schema}.nodes WHERE node_id = $1;

-- name: node_roots
-- ($1 node_ids text[]): node_root of many nodes in one statement; a row per
-- node found (node_id, root_id). Each id is looked up by key (OFFSET 0 keeps
-- the subquery a lookup), whatever the planner knows of the table.
SELECT k.node_id, n.root_id
FROM unnest($1::text[]) AS k (node_id)
CROSS JOIN LATERAL (
    SELECT root_id FROM {schema}.nodes WHERE node_id = k.node_id OFFSET 0
) AS n;

-- name: get_state
-- ($1 node_id)
SELECT node_id, root_id, parent_id, name, state, version, loop, inner_loop, retry, skip,
       error_ignored, created_time, started_time, archived_time
FROM {schema}.states WHERE node_id = $1;

-- name: states_of
-- ($1 node_ids text[]): get_state of many nodes in one statement, a row per
-- node found; each by key (OFFSET 0 keeps the subquery a lookup)
SELECT s.node_id, s.root_id, s.parent_id, s.name, s.state, s.version, s.loop, s.inner_loop,
       s.retry, s.skip, s.error_ignored, s.created_time, s.started_time, s.archived_time
FROM unnest($1::text[]) AS k (node_id)
CROSS JOIN LATERAL (
    SELECT * FROM {schema}.states WHERE node_id = k.node_id OFFSET 0
) AS s;

-- name: states_by_root
-- ($1 root_id)
SELECT node_id, root_id, parent_id, name, state, version, loop, inner_loop, retry, skip,
       error_ignored, created_time, started_time, archived_time
FROM {schema}.states WHERE root_id = $1 ORDER BY created_time;

-- name: states_by_parent
-- ($1 parent_id)
SELECT node_id, root_id, parent_id, name, state, version, loop, inner_loop, retry, skip,
       error_ignored, created_time, started_time, archived_time
FROM {schema}.states WHERE parent_id = $1 ORDER BY created_time;

-- name: get_execution_data
-- ($1 node_id)
SELECT node_id, root_id, inputs, outputs FROM {schema}.execution_data WHERE node_id = $1;

-- name: get_node_data
-- ($1 node_id)
SELECT node_id, root_id, inputs FROM {schema}.node_data WHERE node_id = $1;

-- name: load_runs
-- ($1 root_ids text[]): every row a run is rebuilt from, of all the runs of $1,
-- in ONE statement, so one snapshot and one round trip (no transaction). Each
-- row: the table it comes from, the root id it is grouped by, then 10 text, 3
-- integer, 2 boolean and 3 float columns that each table fills in its own
-- order (_store._LOAD_COLUMNS), NULL elsewhere. Binary columns, not JSON, so
-- floats come back exact whatever the session's extra_float_digits. Every
-- table is read root by root through its root_id index (OFFSET 0 and LIMIT
-- keep each subquery a lookup): "root_id = ANY ($1)" may be planned as a scan
-- of the whole table when the planner has no statistics.
WITH k AS (SELECT DISTINCT unnest($1::text[]) AS root_id)
SELECT 'runs', k.root_id,
       t.root_id, t.tree, t.options, t.status, NULL::text, NULL::text, NULL::text, NULL::text,
       NULL::text, NULL::text, NULL::int, NULL::int, NULL::int, NULL::bool, NULL::bool,
       t.created_time, NULL::float8, NULL::float8
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.runs WHERE root_id = k.root_id LIMIT 1
) AS t
UNION ALL
SELECT 'states', k.root_id,
       s.node_id, s.root_id, s.parent_id, s.name, s.state, s.version, NULL, NULL, NULL, NULL,
       s.loop, s.inner_loop, s.retry, s.skip, s.error_ignored,
       s.created_time, s.started_time, s.archived_time
FROM k CROSS JOIN LATERAL (
    -- through nodes: the states of appointed pauses have root_id ''
    SELECT node_id FROM {schema}.nodes WHERE root_id = k.root_id OFFSET 0
) AS n CROSS JOIN LATERAL (
    SELECT * FROM {schema}.states WHERE node_id = n.node_id LIMIT 1
) AS s
UNION ALL
SELECT 'execution_data', k.root_id,
       t.node_id, t.root_id, t.inputs, t.outputs, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.execution_data WHERE root_id = k.root_id OFFSET 0
) AS t
UNION ALL
SELECT 'node_data', k.root_id,
       t.node_id, t.root_id, t.inputs, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.node_data WHERE root_id = k.root_id OFFSET 0
) AS t
UNION ALL
SELECT 'context', k.root_id,
       t.pipeline_id, t.key, t.root_id, t.value, t.custom_type, NULL, NULL, NULL, NULL, NULL,
       t.type, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.context WHERE root_id = k.root_id OFFSET 0
) AS t
UNION ALL
SELECT 'processes', k.root_id,
       t.id, t.root_id, t.parent_id, t.current_node_id, t.destination_id, t.stack, t.status,
       t.suspended_by, t.children, t.acks, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.processes WHERE root_id = k.root_id OFFSET 0
) AS t
UNION ALL
SELECT 'schedules', k.root_id,
       t.id, t.root_id, t.node_id, t.version, t.process_id, NULL, NULL, NULL, NULL, NULL,
       t.type, t.times, NULL, t.finished, t.expired, NULL, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.schedules WHERE root_id = k.root_id OFFSET 0
) AS t
UNION ALL
SELECT 'callbacks', k.root_id,
       t.id, t.root_id, t.node_id, t.version, t.data, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, t.consumed, NULL, t.created_time, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.callbacks WHERE root_id = k.root_id AND NOT consumed OFFSET 0
) AS t
UNION ALL
SELECT 'timers', k.root_id,
       t.id, t.root_id, t.node_id, t.version, t.kind, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, t.due_time, NULL, NULL
FROM k CROSS JOIN LATERAL (
    SELECT * FROM {schema}.timers WHERE root_id = k.root_id AND due_time IS NOT NULL OFFSET 0
) AS t;

-- name: histories
-- ($1 node_id)
SELECT id, root_id, node_id, started_time, archived_time, loop, skip, retry, version, inputs,
       outputs, created_time
FROM {schema}.histories WHERE node_id = $1 ORDER BY created_time;

-- name: histories_loop
-- ($1 node_id, $2 loop)
SELECT id, root_id, node_id, started_time, archived_time, loop, skip, retry, version, inputs,
       outputs, created_time
FROM {schema}.histories WHERE node_id = $1 AND loop = $2 ORDER BY created_time;


-- Ownership. Lease times are the database's clock, so workers on machines
-- whose clocks disagree still agree on when a lease ran out.

-- name: lock_owned
-- ($1 root_ids text[], $2 owner): the runs of $1 this owner holds, locked until commit
SELECT root_id FROM {schema}.runs
WHERE root_id = ANY($1::text[]) AND owner = $2::text
ORDER BY root_id
FOR SHARE;

-- name: notify
-- ($1 channel, $2 payload): delivered when the transaction commits
SELECT pg_notify($1::text, $2::text);

-- name: claim_runs
-- ($1 owner, $2 lease seconds, $3 limit): active runs, not parked, nobody holds or whose
-- lease ran out; commands their previous holder took and never answered are pending again
WITH claimed AS (
    UPDATE {schema}.runs SET owner = $1::text,
        lease_until = extract(epoch FROM clock_timestamp()) + $2::float8, parked = false
    WHERE root_id IN (
        SELECT root_id FROM {schema}.runs
        WHERE status = 'active' AND NOT parked
          AND (owner IS NULL OR lease_until < extract(epoch FROM clock_timestamp()))
        ORDER BY created_time
        LIMIT $3::int
        FOR UPDATE SKIP LOCKED
    )
    RETURNING root_id
), requeued AS (
    UPDATE {schema}.commands SET status = 'pending'
    WHERE status = 'taken' AND root_id IN (SELECT root_id FROM claimed)
)
SELECT root_id FROM claimed;

-- name: claim_given
-- ($1 owner, $2 lease seconds, $3 root_ids text[]): the same among $3, parked or not
WITH claimed AS (
    UPDATE {schema}.runs SET owner = $1::text,
        lease_until = extract(epoch FROM clock_timestamp()) + $2::float8, parked = false
    WHERE root_id IN (
        SELECT root_id FROM {schema}.runs
        WHERE root_id = ANY($3::text[]) AND status = 'active'
          AND (owner IS NULL OR lease_until < extract(epoch FROM clock_timestamp()))
        FOR UPDATE SKIP LOCKED
    )
    RETURNING root_id
), requeued AS (
    UPDATE {schema}.commands SET status = 'pending'
    WHERE status = 'taken' AND root_id IN (SELECT root_id FROM claimed)
)
SELECT root_id FROM claimed;

-- name: claim_woken
-- ($1 owner, $2 lease seconds, $3 now (the engine's clock), $4 limit): parked
-- active runs nobody holds with a timer due or a command pending. The due
-- timers and pending commands are few and indexed, so they lead, not the
-- parked runs, which may be many.
WITH claimed AS (
    UPDATE {schema}.runs SET owner = $1::text,
        lease_until = extract(epoch FROM clock_timestamp()) + $2::float8, parked = false
    WHERE root_id IN (
        SELECT r.root_id FROM {schema}.runs AS r
        WHERE r.root_id IN (
                SELECT root_id FROM {schema}.timers
                WHERE due_time IS NOT NULL AND due_time <= $3::float8
                UNION
                SELECT root_id FROM {schema}.commands WHERE status = 'pending'
            )
          AND r.parked AND r.status = 'active'
          AND (r.owner IS NULL OR r.lease_until < extract(epoch FROM clock_timestamp()))
        LIMIT $4::int
        FOR UPDATE OF r SKIP LOCKED
    )
    RETURNING root_id
), requeued AS (
    UPDATE {schema}.commands SET status = 'pending'
    WHERE status = 'taken' AND root_id IN (SELECT root_id FROM claimed)
)
SELECT root_id FROM claimed;

-- name: park_runs
-- ($1 root_ids text[], $2 owner): release the runs of $1 this owner holds as
-- parked, except those a command waits for or is being applied to (taken by
-- this holder: a claim would requeue it). A command sent after this is found
-- by claim_woken.
UPDATE {schema}.runs AS r SET owner = NULL, lease_until = NULL, parked = true
WHERE r.root_id = ANY($1::text[]) AND r.owner = $2::text AND r.status = 'active'
  AND NOT EXISTS (
      SELECT 1 FROM {schema}.commands c
      WHERE c.root_id = r.root_id AND c.status IN ('pending', 'taken')
  )
RETURNING r.root_id;

-- name: deliver_callback
-- ($1 root_id, $2 node_id, $3 version, $4 id, $5 data, $6 created_time):
-- store a single callback for a parked run nobody holds, if its node waits for
-- exactly this callback, and unpark the run for a worker to claim. The run's
-- row is locked first: a concurrent delivery waits, then finds it unparked.
-- No NOTIFY here: PostgreSQL serializes the commits of notifying transactions,
-- so the store wakes the workers with one NOTIFY for many deliveries.
WITH run AS (
    SELECT root_id FROM {schema}.runs
    WHERE root_id = $1::text AND parked AND owner IS NULL AND status = 'active'
    FOR UPDATE
), ok AS (
    SELECT 1 FROM run
    WHERE EXISTS (SELECT 1 FROM {schema}.schedules
                  WHERE node_id = $2::text AND version = $3::text AND type = 1
                    AND NOT finished AND NOT expired)
      AND EXISTS (SELECT 1 FROM {schema}.processes
                  WHERE root_id = $1::text AND current_node_id = $2::text
                    AND status = 'sleeping')
      AND EXISTS (SELECT 1 FROM {schema}.states
                  WHERE node_id = $2::text AND version = $3::text AND state = 'RUNNING')
      AND NOT EXISTS (SELECT 1 FROM {schema}.callbacks
                      WHERE root_id = $1::text AND node_id = $2::text
                        AND version = $3::text AND NOT consumed)
), stored AS (
    INSERT INTO {schema}.callbacks (id, root_id, node_id, version, data, consumed, created_time)
    SELECT $4::text, $1::text, $2::text, $3::text, $5::text, false, $6::float8 FROM ok
    RETURNING id
), unparked AS (
    UPDATE {schema}.runs SET parked = false
    WHERE root_id = $1::text AND EXISTS (SELECT 1 FROM stored)
)
SELECT (SELECT count(*) FROM stored) AS stored;

-- name: deliver_callback_to_node
-- ($1 node_id, $2 version, $3 id, $4 data, $5 created_time): deliver_callback
-- for a caller that knows the node only: the run is found through the nodes
-- table in the same statement, so one round trip does both. Returns the root
-- id (NULL: no such node) and whether the callback was stored.
WITH node AS (
    SELECT root_id FROM {schema}.nodes WHERE node_id = $1::text
), run AS (
    SELECT r.root_id FROM {schema}.runs AS r
    WHERE r.root_id = (SELECT root_id FROM node)
      AND r.parked AND r.owner IS NULL AND r.status = 'active'
    FOR UPDATE OF r
), ok AS (
    SELECT run.root_id FROM run
    WHERE EXISTS (SELECT 1 FROM {schema}.schedules
                  WHERE node_id = $1::text AND version = $2::text AND type = 1
                    AND NOT finished AND NOT expired)
      AND EXISTS (SELECT 1 FROM {schema}.processes AS p
                  WHERE p.root_id = run.root_id AND p.current_node_id = $1::text
                    AND p.status = 'sleeping')
      AND EXISTS (SELECT 1 FROM {schema}.states
                  WHERE node_id = $1::text AND version = $2::text AND state = 'RUNNING')
      AND NOT EXISTS (SELECT 1 FROM {schema}.callbacks AS c
                      WHERE c.root_id = run.root_id AND c.node_id = $1::text
                        AND c.version = $2::text AND NOT c.consumed)
), stored AS (
    INSERT INTO {schema}.callbacks (id, root_id, node_id, version, data, consumed, created_time)
    SELECT $3::text, ok.root_id, $1::text, $2::text, $4::text, false, $5::float8 FROM ok
    RETURNING root_id
), unparked AS (
    UPDATE {schema}.runs SET parked = false
    WHERE root_id IN (SELECT root_id FROM stored)
)
SELECT (SELECT root_id FROM node) AS root_id, (SELECT count(*) FROM stored) AS stored;

-- name: deliver_callbacks
-- ($1 callbacks: a JSON array of [node_id, version, id, data, created_time,
--  root_id the run must have, '' for any]):
-- deliver_callback_to_node for many callbacks in one statement and one commit.
-- Returns per callback, in the order given: n (its position, from 1), its
-- node's root id (NULL: no such node) and whether it was stored. One callback
-- per run at most is stored by a statement (the checks of a second one would
-- not see the first): the others of that run are answered not stored and go
-- the usual way. The runs are locked in root id order, so two deliveries
-- never wait for each other in a cycle; every table is reached by key.
WITH given AS MATERIALIZED (
    SELECT x.r->>0 AS node_id, x.r->>1 AS version, x.r->>2 AS id, x.r->>3 AS data,
           (x.r->>4)::float8 AS created_time, x.r->>5 AS expected, x.n,
           (SELECT root_id FROM {schema}.nodes WHERE node_id = x.r->>0) AS root_id
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x (r, n)
), first AS MATERIALIZED (
    SELECT DISTINCT ON (root_id) * FROM given
    WHERE root_id IS NOT NULL AND expected IN ('', root_id)
    ORDER BY root_id, n
), ok AS MATERIALIZED (
    SELECT f.* FROM first AS f
    CROSS JOIN LATERAL (
        SELECT 1 FROM {schema}.runs AS r
        WHERE r.root_id = f.root_id AND r.parked AND r.owner IS NULL AND r.status = 'active'
        FOR UPDATE OF r
    ) AS run
    WHERE EXISTS (SELECT 1 FROM {schema}.schedules
                  WHERE node_id = f.node_id AND version = f.version AND type = 1
                    AND NOT finished AND NOT expired)
      AND EXISTS (SELECT 1 FROM {schema}.processes AS p
                  WHERE p.root_id = f.root_id AND p.current_node_id = f.node_id
                    AND p.status = 'sleeping')
      AND EXISTS (SELECT 1 FROM {schema}.states
                  WHERE node_id = f.node_id AND version = f.version AND state = 'RUNNING')
      AND NOT EXISTS (SELECT 1 FROM {schema}.callbacks AS c
                      WHERE c.root_id = f.root_id AND c.node_id = f.node_id
                        AND c.version = f.version AND NOT c.consumed)
), stored AS (
    INSERT INTO {schema}.callbacks (id, root_id, node_id, version, data, consumed, created_time)
    SELECT id, root_id, node_id, version, data, false, created_time FROM ok
), unparked AS (
    UPDATE {schema}.runs SET parked = false
    WHERE root_id = ANY (ARRAY(SELECT root_id FROM ok))
)
SELECT g.n, g.root_id, EXISTS (SELECT 1 FROM ok WHERE ok.n = g.n) AS stored
FROM given AS g ORDER BY g.n;

-- name: renew_leases
-- ($1 owner, $2 lease seconds): every active run this owner holds
UPDATE {schema}.runs SET lease_until = extract(epoch FROM clock_timestamp()) + $2::float8
WHERE owner = $1::text AND status = 'active'
RETURNING root_id;

-- name: release_runs
-- ($1 owner, $2 root_ids text[], $3 channel): give runs back and wake the workers
WITH released AS (
    UPDATE {schema}.runs SET owner = NULL, lease_until = NULL
    WHERE owner = $1::text AND root_id = ANY($2::text[])
    RETURNING root_id
)
SELECT pg_notify($3::text, 'released') FROM (SELECT count(*) AS n FROM released) AS r WHERE r.n > 0;

-- Commands: operations for the holder of a run.

-- name: insert_command
-- ($1 id, $2 root_id, $3 op, $4 args, $5 created_time, $6 channel)
WITH inserted AS (
    INSERT INTO {schema}.commands (id, root_id, op, args, status, created_time)
    VALUES ($1::text, $2::text, $3::text, $4::text, 'pending', $5::float8)
    RETURNING id
)
SELECT pg_notify($6::text, 'command') FROM inserted;

-- name: take_commands
-- ($1 owner, $2 root_ids text[]): the pending commands of the runs of $2 this
-- owner holds (and has loaded), marked taken
UPDATE {schema}.commands SET status = 'taken'
WHERE status = 'pending' AND root_id = ANY($2::text[])
  AND root_id IN (SELECT root_id FROM {schema}.runs WHERE owner = $1::text)
RETURNING id, root_id, op, args, status, ok, message, created_time;

-- name: complete_command
-- ($1 ok, $2 message, $3 id, $4 channel)
WITH done AS (
    UPDATE {schema}.commands SET status = 'done', ok = $1::boolean, message = $2::text
    WHERE id = $3::text
    RETURNING id
)
SELECT pg_notify($4::text, 'done') FROM done;

-- name: get_command
-- ($1 id)
SELECT id, root_id, op, args, status, ok, message, created_time
FROM {schema}.commands WHERE id = $1::text;

-- name: cancel_command
-- ($1 id)
UPDATE {schema}.commands SET status = 'cancelled'
WHERE id = $1::text AND status = 'pending'
RETURNING id;

-- Events, in id (commit) order.

-- name: read_events
-- ($1 after, $2 limit)
SELECT root_id, node_id, kind, state, data, time, id FROM {schema}.events
WHERE id > $1::bigint ORDER BY id LIMIT $2::int;

-- name: read_events_of_root
-- ($1 root_id, $2 after, $3 limit)
SELECT root_id, node_id, kind, state, data, time, id FROM {schema}.events
WHERE root_id = $1::text AND id > $2::bigint ORDER BY id LIMIT $3::int;

-- name: last_event_id
-- (): the highest committed id; the sequence's value would count ids not yet committed
SELECT coalesce(max(id), 0) FROM {schema}.events;

-- name: purge_events
-- ($1 before): the oldest thousand events, those of them older than $1; the
-- caller repeats while a whole thousand went, so no purge scans the table
WITH gone AS (
    DELETE FROM {schema}.events
    WHERE id IN (SELECT id FROM {schema}.events ORDER BY id LIMIT 1000) AND time < $1::float8
    RETURNING 1
)
SELECT count(*) FROM gone;

-- Listing and retention.

-- name: list_runs
-- ($1 created_after, $2 created_before, $3 before_time, $4 before_id, $5 state, $6 limit):
-- newest first; the bounds are numbers (infinities when unbounded)
SELECT r.root_id, r.status, COALESCE(s.state, ''),
       COALESCE(r.tree::json ->> 'name', ''), r.created_time,
       s.started_time, s.archived_time
FROM {schema}.runs r LEFT JOIN {schema}.states s ON s.node_id = r.root_id
WHERE r.created_time >= $1::float8 AND r.created_time < $2::float8
  AND (r.created_time, r.root_id) < ($3::float8, $4::text)
  AND ($5::text IS NULL OR s.state = $5::text)
ORDER BY r.created_time DESC, r.root_id DESC
LIMIT $6;

-- name: purge_runs
-- ($1 before, $2 limit): delete ended runs whose root ended before $1, oldest
-- first, skipping those another purge is deleting; their root ids. The caller
-- deletes the rest of their rows in the same transaction.
DELETE FROM {schema}.runs WHERE root_id IN (
    SELECT r.root_id FROM {schema}.runs r LEFT JOIN {schema}.states s ON s.node_id = r.root_id
    WHERE r.status <> 'active' AND r.created_time < $1::float8
      AND COALESCE(s.archived_time, r.created_time) < $1::float8
    ORDER BY r.created_time
    LIMIT $2
    FOR UPDATE OF r SKIP LOCKED
) AND status <> 'active'
RETURNING root_id;

-- name: purge_states
-- ($1 root ids): appointed pauses (root_id '') are found through nodes
DELETE FROM {schema}.states WHERE node_id IN (
    SELECT node_id FROM {schema}.nodes WHERE root_id = ANY($1::text[])
) OR root_id = ANY($1::text[]);
