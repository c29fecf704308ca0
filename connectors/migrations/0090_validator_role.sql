-- grid_validator: the role the validator writes the ledger through. It appends to the history
-- (INSERT and SELECT on ledger, postings, rejections) and keeps the caches and positions that are
-- rebuilt from it; it owns nothing, so it can never ALTER a table, DISABLE its append-only trigger,
-- TRUNCATE, or UPDATE/DELETE a ledger row. Migrations run as the owner.
-- checkpoints: INSERT, and DELETE of old ones (a checkpoint is a signed cache of the state, not
-- history). The caches (world_state, open_offers, participants, grid_status) and the positions are
-- upserted in the batch's transaction, so they need UPDATE and DELETE too.
-- Created like grid_reader (0020): the role may exist already (cluster-wide), or the migrating user
-- may not be allowed to create roles, in which case the validator keeps the main URL.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grid_validator') THEN
        BEGIN
            CREATE ROLE grid_validator LOGIN;
        EXCEPTION
            WHEN duplicate_object THEN
                NULL;  -- a migration of another database created it a moment ago
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'grid_validator not created (%): the validator will write through the main role', SQLERRM;
                RETURN;
        END;
    END IF;
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO grid_validator', current_database());
    EXCEPTION
        WHEN insufficient_privilege THEN
            NULL;  -- not the database's owner: PUBLIC's default CONNECT privilege still lets it in
    END;
    GRANT USAGE ON SCHEMA public TO grid_validator;
    GRANT SELECT, INSERT ON ledger, postings, rejections TO grid_validator;
    GRANT SELECT, INSERT, DELETE ON checkpoints TO grid_validator;
    GRANT SELECT, INSERT, UPDATE, DELETE ON world_state, open_offers, participants, grid_status,
        consumer_position, relay_position TO grid_validator;
END $$;
