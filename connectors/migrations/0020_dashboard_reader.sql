-- grid_reader: the role the dashboard reads through. It may SELECT every table, now and later, and
-- nothing else; its sessions are read-only by default as well, so a bug in the dashboard cannot write.
--
-- LOGIN without a password: on a cluster with trust authentication for local connections (the
-- project's own cluster) that is all the dashboard needs; where passwords are required, an
-- administrator sets one (ALTER ROLE grid_reader PASSWORD ...) and passes GRID_DASHBOARD_DATABASE_URL.
-- Roles belong to the whole cluster while grants belong to one database, so the role may already
-- exist (another database of the same cluster ran this file), and a managed server may refuse
-- CREATE ROLE to the migrating user: neither must fail the migration. Without the role the dashboard
-- falls back to the main URL with read-only transactions.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grid_reader') THEN
        BEGIN
            CREATE ROLE grid_reader LOGIN;
        EXCEPTION
            WHEN duplicate_object THEN
                NULL;  -- a migration of another database created it a moment ago
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'grid_reader not created (%): the dashboard will read through the main role', SQLERRM;
                RETURN;
        END;
    END IF;
    BEGIN
        ALTER ROLE grid_reader SET default_transaction_read_only = on;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'grid_reader is not ours to alter (%); the dashboard still asks for read-only', SQLERRM;
    END;
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO grid_reader', current_database());
    EXCEPTION
        WHEN insufficient_privilege THEN
            NULL;  -- not the database's owner: PUBLIC's default CONNECT privilege still lets it in
    END;
    GRANT USAGE ON SCHEMA public TO grid_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO grid_reader;
    -- Tables that later migrations create (by this same migrating role) are readable too.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO grid_reader;
END $$;
