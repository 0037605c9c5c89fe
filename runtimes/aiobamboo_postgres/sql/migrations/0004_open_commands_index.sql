-- Parking looks for commands pending or being applied for one run, and claiming
-- requeues those a dead holder took: neither walks the answered ones, which
-- accumulate.
CREATE INDEX commands_open ON commands (root_id) WHERE status IN ('pending', 'taken');
