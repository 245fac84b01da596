#!/bin/sh
# Run once by the postgres image's entrypoint on a new data folder.
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
