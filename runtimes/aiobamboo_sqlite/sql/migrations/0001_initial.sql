-- aiobamboo SQLite schema, version 1. Never edit after release: add a new file.

-- One row per root pipeline run; the processed tree is stored once.
-- status: 'active' (can progress), 'finished', 'revoked'.
CREATE TABLE runs (
    root_id      TEXT PRIMARY KEY,
    tree         TEXT NOT NULL,
    options      TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_time REAL NOT NULL
);
CREATE INDEX runs_active ON runs (status) WHERE status = 'active';

-- Every node id of every tree (root and sub-process ids included): node -> run.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    root_id TEXT NOT NULL
);
CREATE INDEX nodes_root ON nodes (root_id);

-- state: a name of aiobamboo.states. root_id is '' for a node paused by
-- pause_node_appoint before any process reached it.
CREATE TABLE states (
    node_id       TEXT PRIMARY KEY,
    root_id       TEXT NOT NULL,
    parent_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    state         TEXT NOT NULL,
    version       TEXT NOT NULL,
    loop          INTEGER NOT NULL,
    inner_loop    INTEGER NOT NULL,
    retry         INTEGER NOT NULL,
    skip          INTEGER NOT NULL,
    error_ignored INTEGER NOT NULL,
    created_time  REAL NOT NULL,
    started_time  REAL,
    archived_time REAL
);
CREATE INDEX states_root ON states (root_id);
CREATE INDEX states_parent ON states (parent_id);

CREATE TABLE execution_data (
    node_id TEXT PRIMARY KEY,
    root_id TEXT NOT NULL,
    inputs  TEXT NOT NULL,
    outputs TEXT NOT NULL
);
CREATE INDEX execution_data_root ON execution_data (root_id);

-- Inputs that replaced a node's tree inputs (retry_node with data).
CREATE TABLE node_data (
    node_id TEXT PRIMARY KEY,
    root_id TEXT NOT NULL,
    inputs  TEXT NOT NULL
);
CREATE INDEX node_data_root ON node_data (root_id);

-- type: 1 plain, 2 splice, 3 compute (lazy variable of custom_type).
CREATE TABLE context (
    pipeline_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    root_id     TEXT NOT NULL,
    type        INTEGER NOT NULL,
    value       TEXT NOT NULL,
    custom_type TEXT,
    PRIMARY KEY (pipeline_id, key)
);
CREATE INDEX context_root ON context (root_id);

-- status: running, sleeping, suspended, joining, dead. stack, children and
-- acks are JSON arrays of ids.
CREATE TABLE processes (
    id              TEXT PRIMARY KEY,
    root_id         TEXT NOT NULL,
    parent_id       TEXT,
    current_node_id TEXT NOT NULL,
    destination_id  TEXT,
    stack           TEXT NOT NULL,
    status          TEXT NOT NULL,
    suspended_by    TEXT,
    children        TEXT NOT NULL,
    acks            TEXT NOT NULL
);
CREATE INDEX processes_root ON processes (root_id);

-- type: 1 callback, 2 multiple callback, 3 poll.
CREATE TABLE schedules (
    id         TEXT PRIMARY KEY,
    root_id    TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    version    TEXT NOT NULL,
    type       INTEGER NOT NULL,
    process_id TEXT NOT NULL,
    finished   INTEGER NOT NULL,
    expired    INTEGER NOT NULL,
    times      INTEGER NOT NULL,
    UNIQUE (node_id, version)
);
CREATE INDEX schedules_root ON schedules (root_id);

CREATE TABLE callbacks (
    id           TEXT PRIMARY KEY,
    root_id      TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    version      TEXT NOT NULL,
    data         TEXT NOT NULL,
    consumed     INTEGER NOT NULL,
    created_time REAL NOT NULL
);
CREATE INDEX callbacks_root ON callbacks (root_id);

CREATE TABLE histories (
    id            TEXT PRIMARY KEY,
    root_id       TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    started_time  REAL,
    archived_time REAL,
    loop          INTEGER NOT NULL,
    skip          INTEGER NOT NULL,
    retry         INTEGER NOT NULL,
    version       TEXT NOT NULL,
    inputs        TEXT NOT NULL,
    outputs       TEXT NOT NULL,
    created_time  REAL NOT NULL
);
CREATE INDEX histories_node ON histories (node_id, created_time);
