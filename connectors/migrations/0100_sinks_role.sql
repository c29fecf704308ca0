-- grid_sinks: the role the sinks (Linear, Discord) keep their deliveries through. It touches their
-- own tables and nothing else: it cannot read the ledger's proposals or write any history.
-- Created like grid_reader (0020) and grid_validator (0090): the role may exist already (cluster-wide;
-- the local cluster's `gridgov infra up` creates it with its password), or the migrating user may not
-- be allowed to create roles, in which case the sinks need GRID_SINKS_DATABASE_URL.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grid_sinks') THEN
        BEGIN
            CREATE ROLE grid_sinks LOGIN;
        EXCEPTION
            WHEN duplicate_object THEN
                NULL;  -- a migration of another database created it a moment ago
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'grid_sinks not created (%): set GRID_SINKS_DATABASE_URL for the sinks', SQLERRM;
                RETURN;
        END;
    END IF;
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO grid_sinks', current_database());
    EXCEPTION
        WHEN insufficient_privilege THEN
            NULL;  -- not the database's owner: PUBLIC's default CONNECT privilege still lets it in
    END;
    GRANT USAGE ON SCHEMA public TO grid_sinks;
    GRANT SELECT, INSERT, UPDATE ON sink_deliveries, sink_records, sink_conflicts TO grid_sinks;
    GRANT SELECT ON sink_outbox TO grid_sinks;
    GRANT USAGE ON SEQUENCE sink_deliveries_seq_seq TO grid_sinks;
END $$;
