-- Values of more than about 2 KB (a run's tree above all, and large inputs,
-- outputs, context values and callback data) are stored compressed. With
-- PostgreSQL's default method, pglz, compressing a 10 KB tree took some
-- 0.3 ms of the commit that creates its run, a 500 KB one 8 ms; lz4 takes a
-- fraction of that and reads back faster too. Only values written from now
-- on use it: stored ones stay as they are, and read as before. A server
-- without lz4 (older than PostgreSQL 14, or built without it) keeps pglz.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        -- EXECUTE: a server older than 14 would not even parse SET COMPRESSION.
        EXECUTE 'ALTER TABLE runs ALTER COLUMN tree SET COMPRESSION lz4, '
             || 'ALTER COLUMN options SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE execution_data ALTER COLUMN inputs SET COMPRESSION lz4, '
             || 'ALTER COLUMN outputs SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE node_data ALTER COLUMN inputs SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE context ALTER COLUMN value SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE callbacks ALTER COLUMN data SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE histories ALTER COLUMN inputs SET COMPRESSION lz4, '
             || 'ALTER COLUMN outputs SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE events ALTER COLUMN data SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE commands ALTER COLUMN args SET COMPRESSION lz4';
    END IF;
END
$$;
