-- Every state a node step writes also wrote its parent's entry of this index:
-- one more B-tree page per commit, at a random place when runs are many. The
-- children of a node are found through its run's node ids instead (nodes_root),
-- as the run's states are: a query of the operators, not of the node steps.
DROP INDEX states_parent;
