#!/usr/bin/env bash
# A materialized view of ROWS rows read whole by two clients of the same StreamHouse release
# server in the same run: the ADBC Flight SQL driver into a pyarrow Table (`fetch_arrow_table`)
# and psycopg 3 over the Postgres protocol into Python tuples (`fetchall`), ROUNDS times each.
# Each round first commits a change to the view (one more bid, then FLUSH) and reads it twice:
# the first read goes to the state store ("cold"), the second is answered from the server's view
# read cache ("warm", the view has not committed since). Reports the median wall times of both
# and the ratios (target: ADBC >= 5 x psycopg). Every read is checked to return the view's every
# row of the last commit (count, sum of the key, sum of the bids counted).
#
#   benches/adbc_vs_psycopg.sh [ROWS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
python3 -c "import psycopg, pyarrow, adbc_driver_flightsql.dbapi" 2>/dev/null || \
  python3 -m pip install -q --break-system-packages 'psycopg[binary]>=3.1' 'pyarrow>=15' 'adbc-driver-flightsql>=1.0' 'adbc-driver-manager>=1.0'

rows=${1:-1000000}
rounds=${2:-5}
# STREAMHOUSE_BIN: another build of the server (the release build by default).
binary=${STREAMHOUSE_BIN:-./target/release/streamhouse}
[ -n "${STREAMHOUSE_BIN:-}" ] || cargo build --release -q -p streamhouse

work=$(mktemp -d)
cleanup() {
  [ -n "${sh_pid:-}" ] && kill "$sh_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pg_port=$(free_port)
flight_port=$(free_port)
http_port=$(free_port)
"$binary" serve --data-dir "$work/sh" --pg-listen "127.0.0.1:$pg_port" \
  --http-listen "127.0.0.1:$http_port" --flight-listen "127.0.0.1:$flight_port" > "$work/sh.log" 2>&1 &
sh_pid=$!

python3 - "$rows" "$rounds" "$pg_port" "$flight_port" "$http_port" <<'EOF'
import statistics
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import psycopg
import pyarrow.compute as pc

rows, rounds, pg_port, flight_port, http_port = (int(a) for a in sys.argv[1:])
for _ in range(300):
    try:
        pg = psycopg.connect(host="127.0.0.1", port=pg_port, user="streamhouse", dbname="streamhouse", autocommit=True)
        break
    except psycopg.OperationalError:
        time.sleep(0.1)
else:
    sys.exit("StreamHouse did not start")

# A topic of bids and a view with one row per auction: ROWS rows of five columns.
pg.execute("CREATE TOPIC bids (auction BIGINT NOT NULL, bidder BIGINT NOT NULL, price BIGINT NOT NULL, channel TEXT NOT NULL)")
pg.execute("CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS bids, max(price) AS top, "
           "min(bidder) AS first_bidder, max(channel) AS channel FROM bids GROUP BY auction")
channels = ["Google", "Facebook", "Baidu", "Apple"]
with pg.cursor().copy("COPY bids FROM STDIN") as copy:
    for i in range(rows * 2):
        auction = i % rows
        copy.write_row((auction, i * 7 % 100003, i * 31 % 10000019, channels[i % 4]))
pg.execute("FLUSH")
expected = (rows, rows * (rows - 1) // 2)


bids_loaded = rows * 2


def timed(read):
    global bids_loaded
    cold, warm = [], []
    for _ in range(rounds):
        # A change the view commits (auction 0 gains a bid: same rows, same keys, one more bid).
        pg.execute("INSERT INTO bids VALUES (0, 1, 1, 'Google')")
        pg.execute("FLUSH")
        bids_loaded += 1
        for times in (cold, warm):
            started = time.perf_counter()
            got = read()
            times.append(time.perf_counter() - started)
            assert got == expected + (bids_loaded,), (got, expected, bids_loaded)
    print(f"{read.__name__}: cold {[round(t * 1000) for t in cold]} ms, warm {[round(t * 1000) for t in warm]} ms", file=sys.stderr)
    return statistics.median(cold), statistics.median(warm)


def psycopg_read():
    with pg.cursor() as cur:
        cur.execute("SELECT * FROM per_auction")
        result = cur.fetchall()
    return len(result), sum(r[0] for r in result), sum(r[1] for r in result)


adbc = flightsql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True)


def adbc_read():
    with adbc.cursor() as cur:
        cur.execute("SELECT * FROM per_auction")
        table = cur.fetch_arrow_table()
    return table.num_rows, pc.sum(table.column("auction")).as_py(), pc.sum(table.column("bids")).as_py()


psycopg_cold, psycopg_warm = timed(psycopg_read)
adbc_cold, adbc_warm = timed(adbc_read)
import urllib.request
metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics").read().decode()
print(" ".join(line for line in metrics.splitlines() if line.startswith("streamhouse_view_read_cache")), file=sys.stderr)
print(f"a view of {rows} rows (5 columns) read whole, median of {rounds} reads each")
for label, psycopg_s, adbc_s in (("cold (first read after a commit)", psycopg_cold, adbc_cold),
                                 ("warm (read cache, no commit since)", psycopg_warm, adbc_warm)):
    print(label)
    print(f"  psycopg fetchall (pgwire)            {psycopg_s * 1000:>9.1f} ms  {rows / psycopg_s:>12.0f} rows/s")
    print(f"  ADBC Flight SQL fetch_arrow_table    {adbc_s * 1000:>9.1f} ms  {rows / adbc_s:>12.0f} rows/s")
    ratio = psycopg_s / adbc_s
    print(f"  ratio adbc vs psycopg: {ratio:.2f}x (target >= 5x: {'met' if ratio >= 5 else 'NOT met'})")
EOF
