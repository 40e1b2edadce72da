#!/usr/bin/env bash
# psql's `\d name` with many relations: StreamHouse against PostgreSQL on the same machine.
#
# Creates TOPICS topics (PostgreSQL: tables) of four columns and one keyed table (a primary
# key) on each server, records the queries psql itself sends for `\d name` (psql -E against
# PostgreSQL), then replays them with psycopg ROUNDS times on each server, one connection each:
# the first query finds the relation's OID, the others use it, as psql does. Reports the median
# and p99 of a whole `\d` (all its queries) for a topic and for the keyed table, and the ratios.
# Baseline: PostgreSQL 15, same run, same client.
#
#   benches/describe_vs_postgres.sh [TOPICS] [ROUNDS]
# STREAMHOUSE_BIN picks the server binary (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
topics=${1:-1000}
rounds=${2:-50}
pg_bin=$(postgres_bin)
source benches/common.sh

pg_port=$(free_port)
mkdir "$work/pg" && chown postgres "$work/pg"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" -l "$work/pg/server.log" -w start >/dev/null

sh_port=$(free_port)
"$bin" serve --data-dir "$work/sh" --pg-listen "127.0.0.1:$sh_port" --http-listen "127.0.0.1:0" --flight-listen "127.0.0.1:0" \
  > "$work/sh.out" 2> "$work/sh.log" &
pids="$!"
for _ in $(seq 600); do grep -q "streamhouse ready" "$work/sh.out" 2>/dev/null && break; sleep 0.1; done

# The same relations on both; the DDL goes in one script per server.
{
  for i in $(seq 0 $((topics - 1))); do
    echo "CREATE TABLE t$i (id bigint, name text, price numeric(10,2), at timestamp);"
  done
  echo "CREATE TABLE k (id bigint PRIMARY KEY, name text);"
} > "$work/pg.sql"
sed 's/^CREATE TABLE t/CREATE TOPIC t/' "$work/pg.sql" > "$work/sh.sql"
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 -f "$work/pg.sql"
psql -X -q -h 127.0.0.1 -p "$sh_port" -U streamhouse -d streamhouse -v ON_ERROR_STOP=1 -f "$work/sh.sql"

# The queries psql sends for `\d name`, as this psql writes them.
middle="t$((topics / 2))"
for name in "$middle" k; do
  psql -X -E -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "\\d $name" > "$work/describe-$name.log"
done

python3 - "$pg_port" "$sh_port" "$rounds" "$work" "$middle" <<'EOF'
import re, statistics, sys, time
import psycopg

pg_port, sh_port, rounds, work, middle = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

def queries(name):
    text = open(f"{work}/describe-{name}.log").read()
    return re.findall(r"\*{9} QUERY \*{10}\n(.*?)\n\*{26}", text, re.S)

def describe(conn, texts):
    """psql's \\d: the first query finds the OID, the others use it."""
    found = conn.execute(texts[0]).fetchall()
    oid = str(found[0][0])
    pg_oid = re.search(r"'(\d+)'", texts[1]).group(1)
    for text in texts[1:]:
        conn.execute(text.replace(f"'{pg_oid}'", f"'{oid}'")).fetchall()

def run(port, user, db, texts):
    with psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=db, autocommit=True) as conn:
        describe(conn, texts)  # warm up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            describe(conn, texts)
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[max(int(len(times) * 0.99) - 1, 0)]

print(f"psql's \\d name, replayed with psycopg {psycopg.__version__}, {rounds} rounds")
for name in (middle, "k"):
    texts = queries(name)
    pg = run(pg_port, "postgres", "postgres", texts)
    sh = run(sh_port, "streamhouse", "streamhouse", texts)
    print(f"  \\d {name:6} ({len(texts)} queries)  PostgreSQL median {pg[0]:7.2f} ms p99 {pg[1]:7.2f} ms   "
          f"StreamHouse median {sh[0]:7.2f} ms p99 {sh[1]:7.2f} ms   ratio {sh[0] / pg[0]:.2f}")
EOF
