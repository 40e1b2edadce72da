"""asyncpg against a running StreamHouse. asyncpg uses the extended protocol with binary
parameters and binary results for every type, typed from the server's ParameterDescription and
RowDescription: it checks our binary encoders and decoders."""

import asyncio
import json
import os
import sys

import asyncpg

sys.path.insert(0, os.path.dirname(__file__))
from common import NAMES, check_rows, columns_of, project  # noqa: E402

# Every supported type, arrays included: asyncpg learns about array types (all but text[] and
# oid[]) by its type introspection query, which StreamHouse answers.
ASYNCPG_NAMES = NAMES

PORT = int(os.environ["STREAMHOUSE_PG_PORT"])


async def expect_sqlstate(query, sqlstate):
    """Awaits `query`, which must fail with `sqlstate`."""
    try:
        await query
    except asyncpg.PostgresError as error:
        assert error.sqlstate == sqlstate, (error.sqlstate, sqlstate, error)
    else:
        raise AssertionError(f"expected an error with SQLSTATE {sqlstate}")


async def main():
    conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="streamhouse", database="streamhouse")
    await conn.execute(f"CREATE TOPIC asyncpg_types ({columns_of(ASYNCPG_NAMES)})")
    placeholders = ", ".join(f"${i + 1}" for i in range(len(ASYNCPG_NAMES)))
    insert = await conn.prepare(f"INSERT INTO asyncpg_types VALUES ({placeholders})")
    # asyncpg passes jsonb as text (JSON documents) both ways.
    j = ASYNCPG_NAMES.index("j")
    for row in project(ASYNCPG_NAMES):
        row = list(row)
        row[j] = None if row[j] is None else json.dumps(row[j])
        await insert.fetch(*row)
    rows = await conn.fetch(f"SELECT {', '.join(ASYNCPG_NAMES)} FROM asyncpg_types ORDER BY id")
    decoded = []
    for r in rows:
        r = list(r)
        r[j] = None if r[j] is None else json.loads(r[j])
        decoded.append(tuple(r))
    check_rows(decoded, ASYNCPG_NAMES)

    # executemany: one statement per row, all acknowledged.
    await conn.execute("CREATE TOPIC asyncpg_many (id BIGINT, label TEXT)")
    await conn.executemany("INSERT INTO asyncpg_many VALUES ($1, $2)", [(i, f"label {i}") for i in range(200)])
    total, labels = await conn.fetchrow("SELECT sum(id), count(DISTINCT label) FROM asyncpg_many")
    assert (total, labels) == (sum(range(200)), 200), (total, labels)

    # Cursors fetch in chunks through portals.
    async with conn.transaction():
        seen = [r["id"] async for r in conn.cursor("SELECT id FROM asyncpg_many ORDER BY id", prefetch=7)]
    assert seen == list(range(200)), seen[:10]

    # A keyed table: upserts, UPDATE and DELETE with bound parameters, ON CONFLICT DO NOTHING.
    await conn.execute("CREATE TABLE asyncpg_people (id BIGINT PRIMARY KEY, name TEXT, score INT)")
    await conn.executemany("INSERT INTO asyncpg_people VALUES ($1, $2, $3)", [(i, f"p{i}", i * 10) for i in range(5)])
    await conn.execute("INSERT INTO asyncpg_people VALUES ($1, $2, $3)", 4, "p4 again", 41)
    status = await conn.execute("UPDATE asyncpg_people SET score = score + $1, name = $2 WHERE id = $3", 5, "renamed", 2)
    assert status == "UPDATE 1", status
    status = await conn.execute("DELETE FROM asyncpg_people WHERE score < $1", 15)
    assert status == "DELETE 2", status  # ids 0 (score 0) and 1 (score 10)
    status = await conn.execute(
        "INSERT INTO asyncpg_people VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT (id) DO NOTHING", 2, "x", 0, 9, "nine", 90
    )
    assert status == "INSERT 0 1", status
    rows = [tuple(r) for r in await conn.fetch("SELECT id, name, score FROM asyncpg_people ORDER BY id")]
    assert rows == [(2, "renamed", 25), (3, "p3", 30), (4, "p4 again", 41), (9, "nine", 90)], rows

    await expect_sqlstate(conn.fetch("SELECT * FROM missing_topic"), "42P01")
    assert await conn.fetchval("SELECT 40 + 2") == 42
    # Arrays of other element types, bound and returned (each found by the type lookup).
    assert await conn.fetchval("SELECT $1::BIGINT[]", [1, None, -(2**62)]) == [1, None, -(2**62)]
    assert await conn.fetchval("SELECT $1::DOUBLE PRECISION[]", [0.5, -1.25]) == [0.5, -1.25]
    assert await conn.fetchval("SELECT current_setting('client_encoding')") == "UTF8"
    assert await conn.fetchval("SELECT current_setting('no_such_setting', true)") is None
    await expect_sqlstate(conn.fetchval("SELECT current_setting('no_such_setting')"), "42704")
    await conn.close()
    print("asyncpg: ok")


asyncio.run(main())
