-- Claiming finds the runs that are ready (active, not parked) without walking
-- the parked ones: with many pipelines waiting, those are nearly all of them.
-- The index of every active run would be chosen instead, so it goes.
DROP INDEX runs_active;
CREATE INDEX runs_ready ON runs (created_time) WHERE status = 'active' AND parked = 0;

-- Parking looks for commands pending or being applied, for one run.
CREATE INDEX commands_open ON commands (root_id) WHERE status IN ('pending', 'taken');
