-- SQLite rewrites a whole row when any of its columns changes, overflow pages
-- included: every status change, claim, lease renewal and park of a run wrote
-- its processed tree again (hundreds of pages for a tree of a few hundred
-- nodes, at every renewal of every held run). Trees and options now live in a
-- table of their own, written once when the run is created; a run row keeps
-- the id of its tree. Tree ids grow with each run, so new trees are appended
-- and need no index of their own.
CREATE TABLE trees (
    id      INTEGER PRIMARY KEY,
    tree    TEXT NOT NULL,
    options TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN tree_id INTEGER NOT NULL DEFAULT 0;
INSERT INTO trees (id, tree, options) SELECT rowid, tree, options FROM runs;
UPDATE runs SET tree_id = rowid;
ALTER TABLE runs DROP COLUMN tree;
ALTER TABLE runs DROP COLUMN options;
