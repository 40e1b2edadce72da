"""Logs in with psycopg 3 (SCRAM-SHA-256 through libpq) and prints who it is, or the SQLSTATE.

The host is PGHOST (default 127.0.0.1); libpq itself reads PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
PGSSLKEY and PGCHANNELBINDING."""
import os
import sys

import psycopg

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    with psycopg.connect(host=os.environ.get("PGHOST", "127.0.0.1"), port=port, user=user, password=password, dbname="streamhouse") as conn:
        row = conn.execute("SELECT current_user, session_user").fetchone()
        print("ok", row[0], row[1])
except psycopg.OperationalError as error:
    # libpq reports a failed startup as text: the SQLSTATE is in the server's message fields.
    state = error.sqlstate or ""
    print("error", state, str(error).strip().splitlines()[-1])
