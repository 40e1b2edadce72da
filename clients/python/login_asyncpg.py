"""Logs in with asyncpg (its own SCRAM-SHA-256) and prints who it is, or the SQLSTATE."""
import asyncio
import sys

import asyncpg

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]


async def main():
    try:
        conn = await asyncpg.connect(host="127.0.0.1", port=int(port), user=user, password=password, database="streamhouse", ssl=False)
    except asyncpg.PostgresError as error:
        print("error", error.sqlstate, error)
        return
    row = await conn.fetchrow("SELECT current_user, session_user")
    print("ok", row[0], row[1])
    await conn.close()


asyncio.run(main())
