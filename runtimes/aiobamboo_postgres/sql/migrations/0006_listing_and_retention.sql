-- Listing pipelines pages by (created_time, root_id), newest first.
CREATE INDEX runs_created ON runs (created_time, root_id);

-- Purging finds the ended runs by age without walking the active ones.
CREATE INDEX runs_ended ON runs (created_time) WHERE status <> 'active';

-- Purging deletes a run's histories, commands and callbacks (consumed ones
-- included) by run.
CREATE INDEX histories_root ON histories (root_id);
CREATE INDEX commands_root ON commands (root_id);
CREATE INDEX callbacks_any_root ON callbacks (root_id);
