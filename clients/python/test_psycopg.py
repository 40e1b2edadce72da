"""psycopg 3 against a running StreamHouse: bound parameters of every type, read back exactly,
with both text and binary results, plus COPY and errors with SQLSTATEs."""

import os
import sys

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, os.path.dirname(__file__))
from common import COLUMNS, NAMES, ROWS, check_rows  # noqa: E402

PORT = int(os.environ["STREAMHOUSE_PG_PORT"])


def main():
    with psycopg.connect(host="127.0.0.1", port=PORT, user="streamhouse", dbname="streamhouse", autocommit=True) as conn:
        conn.execute(f"CREATE TOPIC psycopg_types ({COLUMNS})")
        placeholders = ", ".join(["%s"] * len(NAMES))
        with conn.cursor() as cur:
            for row in ROWS:
                values = [Jsonb(v) if name == "j" and v is not None else v for name, v in zip(NAMES, row)]
                cur.execute(f"INSERT INTO psycopg_types VALUES ({placeholders})", values)
                assert cur.rowcount == 1, cur.rowcount
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(f"SELECT {', '.join(NAMES)} FROM psycopg_types ORDER BY id")
                check_rows(cur.fetchall())
        # Parameters in WHERE, inferred from the comparison.
        row = conn.execute("SELECT t FROM psycopg_types WHERE id = %s AND i4 > %s", (1, 5)).fetchone()
        assert row == ("héllo wörld ✓ 日本",), row

        # COPY in and out.
        conn.execute("CREATE TOPIC psycopg_copy (id INT, name TEXT)")
        with conn.cursor().copy("COPY psycopg_copy FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, None if i % 10 == 0 else f"name\t{i}"))
        count, nulls = conn.execute("SELECT count(*), count(*) - count(name) FROM psycopg_copy").fetchone()
        assert (count, nulls) == (1000, 100), (count, nulls)
        with conn.cursor().copy("COPY (SELECT id, name FROM psycopg_copy WHERE id < 3 ORDER BY id) TO STDOUT") as copy:
            rows = list(copy.rows())
        assert rows == [("0", None), ("1", "name\t1"), ("2", "name\t2")], rows

        # A keyed table: upserts, UPDATE and DELETE with bound parameters, ON CONFLICT DO NOTHING.
        conn.execute("CREATE TABLE psycopg_people (id BIGINT PRIMARY KEY, name TEXT, score INT)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO psycopg_people VALUES (%s, %s, %s)", [(i, f"p{i}", i * 10) for i in range(5)])
        conn.execute("INSERT INTO psycopg_people VALUES (%s, %s, %s)", (4, "p4 again", 41))
        cur = conn.execute("UPDATE psycopg_people SET score = score + %s, name = %s WHERE id = %s", (5, "renamed", 2))
        assert cur.rowcount == 1, cur.rowcount
        cur = conn.execute("DELETE FROM psycopg_people WHERE score < %s", (15,))
        assert cur.rowcount == 2, cur.rowcount  # ids 0 (score 0) and 1 (score 10)
        cur = conn.execute(
            "INSERT INTO psycopg_people VALUES (%s, %s, %s), (%s, %s, %s) ON CONFLICT (id) DO NOTHING", (2, "x", 0, 9, "nine", 90)
        )
        assert cur.rowcount == 1, cur.rowcount
        rows = conn.execute("SELECT id, name, score FROM psycopg_people ORDER BY id").fetchall()
        assert rows == [(2, "renamed", 25), (3, "p3", 30), (4, "p4 again", 41), (9, "nine", 90)], rows
        # COPY into a keyed table upserts, the last row of a key winning.
        with conn.cursor().copy("COPY psycopg_people FROM STDIN") as copy:
            for row in [(3, "copied", 1), (10, "ten", 100), (10, "ten again", 101)]:
                copy.write_row(row)
        rows = conn.execute("SELECT id, name, score FROM psycopg_people WHERE id IN (3, 10) ORDER BY id").fetchall()
        assert rows == [(3, "copied", 1), (10, "ten again", 101)], rows

        # Errors carry SQLSTATEs and the session stays usable.
        for sql, code in [
            ("SELECT * FROM no_such_topic", "42P01"),
            ("SELEC 1", "42601"),
            ("INSERT INTO psycopg_types (id) VALUES (NULL)", "23502"),
            ("SELECT 1/0", "22012"),
        ]:
            try:
                conn.execute(sql)
            except psycopg.Error as error:
                assert error.sqlstate == code, (sql, error.sqlstate, str(error))
            else:
                raise AssertionError(f"{sql} did not fail")
        assert conn.execute("SELECT 1").fetchone() == (1,)

    # Non-autocommit mode: psycopg wraps statements in BEGIN … COMMIT.
    with psycopg.connect(host="127.0.0.1", port=PORT, user="streamhouse", dbname="other") as conn:
        conn.execute("INSERT INTO psycopg_copy VALUES (%s, %s)", (5000, "in a transaction"))
        conn.commit()
        assert conn.execute("SELECT name FROM psycopg_copy WHERE id = 5000").fetchone() == ("in a transaction",)

    # Nested transactions (psycopg's SAVEPOINT, RELEASE and ROLLBACK TO): an error inside the
    # inner block is rolled back to its savepoint and the outer block goes on. Writes are not
    # undone (every statement commits on its own, see docs/sql.md), which the last check shows.
    with psycopg.connect(host="127.0.0.1", port=PORT, user="streamhouse", dbname="other", autocommit=True) as conn:
        with conn.transaction():
            with conn.transaction():
                conn.execute("INSERT INTO psycopg_copy VALUES (%s, %s)", (5001, "inner, released"))
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO psycopg_copy VALUES (%s, %s)", (5002, "inner, then an error"))
                    conn.execute("SELECT 1/0")
            except psycopg.errors.DivisionByZero:
                pass
            assert conn.execute("SELECT count(*) FROM psycopg_copy WHERE id IN (5001, 5002)").fetchone() == (2,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        except psycopg.errors.FeatureNotSupported:
            pass
        else:
            raise AssertionError("SERIALIZABLE was accepted, but a block of statements is not isolated")
    print("psycopg: ok")


if __name__ == "__main__":
    main()
