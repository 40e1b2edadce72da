"""Logs in with asyncpg (its own SCRAM-SHA-256) and prints who it is, or the SQLSTATE.

The host is PGHOST (default 127.0.0.1); with PGSSLMODE set, asyncpg reads it and PGSSLROOTCERT,
PGSSLCERT and PGSSLKEY itself, as libpq does."""
import asyncio
import os
import sys

import asyncpg

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]


async def main():
    try:
        tls = {} if "PGSSLMODE" in os.environ else {"ssl": False}
        conn = await asyncpg.connect(host=os.environ.get("PGHOST", "127.0.0.1"), port=int(port), user=user, password=password, database="streamhouse", **tls)
    except asyncpg.PostgresError as error:
        print("error", error.sqlstate, error)
        return
    except OSError as error:  # a TLS handshake that failed (ssl.SSLError), a refused connection
        print("error", type(error).__name__, error)
        return
    row = await conn.fetchrow("SELECT current_user, session_user")
    print("ok", row[0], row[1])
    await conn.close()


asyncio.run(main())
