#!/usr/bin/env bash
# Run once by the postgres image when its data directory is created (/docker-entrypoint-initdb.d):
# the services' own roles, each with its own password from the compose file's secrets. The
# migrations then grant them their privileges (grid_validator: append-only on the history,
# grid_sinks: their own tables, grid_reader: read-only) and never give them the owner's.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v validator_pw="$GRID_VALIDATOR_DB_PASSWORD" -v reader_pw="$GRID_READER_DB_PASSWORD" \
    -v sinks_pw="$GRID_SINKS_DB_PASSWORD" <<'SQL'
CREATE ROLE grid_validator LOGIN PASSWORD :'validator_pw';
CREATE ROLE grid_reader LOGIN PASSWORD :'reader_pw';
CREATE ROLE grid_sinks LOGIN PASSWORD :'sinks_pw';
SQL
