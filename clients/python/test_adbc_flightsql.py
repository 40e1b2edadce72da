"""The ADBC Flight SQL driver (adbc_driver_flightsql, with its DB-API) against a running
StreamHouse: DDL and INSERT on the query path, queries with and without parameters, executemany,
bulk ingest (create and append), metadata (get_objects, table schema, table types, info),
results larger than the driver's 16 MiB message limit, pandas, errors with their SQLSTATE, and
cancellation. psycopg checks what Flight wrote over the Postgres protocol."""

import os
import threading
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import psycopg
import pyarrow as pa

PG_PORT = int(os.environ["STREAMHOUSE_PG_PORT"])
FLIGHT_PORT = int(os.environ["STREAMHOUSE_FLIGHT_PORT"])
URI = f"grpc://127.0.0.1:{FLIGHT_PORT}"


def expect_error(fragment, call, kinds=(adbc_driver_manager.Error,)):
    try:
        call()
    except kinds as error:
        assert fragment in str(error), f"expected {fragment!r} in {error}"
        return error
    raise AssertionError(f"expected an error with {fragment!r}")


def main():
    pg = psycopg.connect(host="127.0.0.1", port=PG_PORT, user="streamhouse", dbname="streamhouse", autocommit=True)
    with flight_sql.connect(URI, autocommit=True) as conn, conn.cursor() as cur:
        # DDL and INSERT go through the query path (ADBC prepares every statement).
        cur.execute("CREATE TOPIC adbc_items (id BIGINT NOT NULL, name TEXT, price NUMERIC(10,2), at TIMESTAMP)")
        cur.execute("INSERT INTO adbc_items VALUES (1, 'one', 1.50, '2024-01-01 10:00:00'), (2, 'two', NULL, NULL)")
        assert cur.rowcount == 2, cur.rowcount
        assert pg.execute("SELECT count(*) FROM adbc_items").fetchone()[0] == 2

        cur.execute("SELECT id, name FROM adbc_items ORDER BY id")
        assert cur.fetchall() == [(1, "one"), (2, "two")]
        assert [d[0] for d in cur.description] == ["id", "name"]

        # Parameters, bound by position ($1 as in PostgreSQL).
        cur.execute("SELECT name FROM adbc_items WHERE id = $1", (2,))
        assert cur.fetchall() == [("two",)]
        cur.execute("INSERT INTO adbc_items (id, name) VALUES ($1, $2)", (3, "three"))
        cur.executemany("INSERT INTO adbc_items (id, name) VALUES ($1, $2)", [(10 + i, f"many {i}") for i in range(20)])
        assert pg.execute("SELECT count(*), sum(id) FROM adbc_items").fetchone() == (23, 1 + 2 + 3 + sum(10 + i for i in range(20)))

        # Writes over pgwire are visible at once over Flight.
        pg.execute("INSERT INTO adbc_items (id, name) VALUES (100, 'from pg')")
        cur.execute("SELECT name FROM adbc_items WHERE id = 100")
        assert cur.fetchall() == [("from pg",)]

        # Types arrive as Arrow types.
        cur.execute("SELECT id, price, at FROM adbc_items WHERE id = 1")
        table = cur.fetch_arrow_table()
        assert table.schema.field("id").type == pa.int64()
        assert table.schema.field("price").type == pa.decimal128(10, 2)
        assert table.schema.field("at").type == pa.timestamp("us")
        assert str(table.column("price")[0]) == "1.50"

        # Bulk ingest: create a topic from an Arrow table, then append to it.
        data = pa.table({"k": pa.array(range(50_000), pa.int64()), "v": pa.array([f"v{i}" for i in range(50_000)])})
        assert cur.adbc_ingest("adbc_ingested", data, mode="create") == 50_000
        assert cur.adbc_ingest("adbc_ingested", data.slice(0, 10), mode="append") == 10
        assert pg.execute("SELECT count(*), sum(k) FROM adbc_ingested").fetchone() == (50_010, sum(range(50_000)) + sum(range(10)))
        expect_error("already exists", lambda: cur.adbc_ingest("adbc_ingested", data, mode="create"))
        expect_error("does not exist", lambda: cur.adbc_ingest("adbc_missing", data, mode="append"))
        assert pg.execute("SELECT count(*) FROM adbc_ingested").fetchone()[0] == 50_010, "a refused ingest appends nothing"

        # A result far larger than the driver's 16 MiB message limit arrives whole.
        cur.execute("SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 200000) AS t(i)")
        big = cur.fetch_arrow_table()
        assert big.num_rows == 200_000 and big.column("i").to_pylist()[-1] == 200_000
        assert big.nbytes > 32 * 1024 * 1024, big.nbytes

        # pandas.
        cur.execute("SELECT k, v FROM adbc_ingested WHERE k < 1000 ORDER BY k")
        frame = cur.fetch_df()
        assert list(frame.columns) == ["k", "v"] and len(frame) == 1010, frame.shape
        assert int(frame["k"].sum()) == sum(range(1000)) + sum(range(10))

        # Metadata.
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        tables = {t["table_name"]: t for c in objects for s in c["catalog_db_schemas"] for t in (s["db_schema_tables"] or [])}
        assert tables["adbc_items"]["table_type"] == "TOPIC", tables["adbc_items"]
        columns = [c["column_name"] for c in tables["adbc_items"]["table_columns"]]
        assert columns == ["id", "name", "price", "at"], columns
        schema = conn.adbc_get_table_schema("adbc_items")
        assert schema.names == ["id", "name", "price", "at"] and schema.field("id").type == pa.int64(), schema
        types = conn.adbc_get_table_types()
        assert {"TOPIC", "TABLE", "MATERIALIZED VIEW"} <= set(types), types
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "StreamHouse", info

        # Keyed tables report their primary key; views are listed with their own type.
        cur.execute("CREATE TABLE adbc_people (id BIGINT PRIMARY KEY, name TEXT)")
        cur.execute("CREATE MATERIALIZED VIEW adbc_names AS SELECT name, count(*) AS n FROM adbc_items GROUP BY name")
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        kinds = {t["table_name"]: t["table_type"] for c in objects for s in c["catalog_db_schemas"] for t in (s["db_schema_tables"] or [])}
        assert kinds["adbc_people"] == "TABLE" and kinds["adbc_names"] == "MATERIALIZED VIEW", kinds
        cur.execute("FLUSH")
        cur.execute("SELECT n FROM adbc_names WHERE name = 'one'")
        assert cur.fetchall() == [(1,)]

        # Errors carry the SQLSTATE; the connection goes on.
        expect_error("42P01", lambda: cur.execute("SELECT * FROM no_such_topic"))
        expect_error("42601", lambda: cur.execute("SELEC 1"))
        expect_error("23502", lambda: cur.execute("INSERT INTO adbc_items (id) VALUES (NULL)"))
        cur.execute("SELECT 1 AS one")
        assert cur.fetchall() == [(1,)]

        # Cancellation stops a query that would run for ever.
        cur.execute("SUBSCRIBE TO adbc_names")
        reader = cur.fetch_record_batch()
        assert reader.read_next_batch().num_rows >= 1
        timer = threading.Timer(0.2, cur.adbc_cancel)
        timer.start()
        # The driver's record batch reader reports the cancellation as an OSError.
        expect_error("anceled", lambda: [reader.read_next_batch() for _ in range(1_000_000)], (adbc_driver_manager.Error, OSError))

    # Without autocommit the driver finds no transactions and says so; statements still commit.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conn = flight_sql.connect(URI)
    assert any("autocommit" in str(w.message) for w in caught), [str(w.message) for w in caught]
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO adbc_items (id) VALUES (1000)")
    assert pg.execute("SELECT count(*) FROM adbc_items WHERE id = 1000").fetchone()[0] == 1
    pg.close()
    print("adbc flightsql: ok")


if __name__ == "__main__":
    main()
