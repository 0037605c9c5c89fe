-- Every node step writes states and execution data; each index of a table is
-- one more B-tree page per commit. A run's states and execution data are
-- found through its node ids (nodes_root) instead, as loading a run already
-- finds its states, so these two indexes serve no query.
DROP INDEX states_root;
DROP INDEX execution_data_root;
