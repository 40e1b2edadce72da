#!/usr/bin/env bash
# COPY over the wire: StreamHouse against PostgreSQL on the same machine, same rows, same client.
#
# Starts a throwaway PostgreSQL cluster (Debian's `postgresql` package, installed if missing;
# default durability: fsync and synchronous_commit on) and a StreamHouse release server, writes
# a CSV of ROWS bid rows (auction, bidder, price bigint; channel, url text; date_time timestamp),
# then loads it ROUNDS times into each with `psql -c "\copy … FROM … CSV"` and reports the median
# wall time per load and the ratio (target: StreamHouse ≥ 3 × PostgreSQL's rows per second).
#
#   benches/copy_vs_postgres.sh [ROWS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

rows=${1:-1000000}
rounds=${2:-5}
pg_bin=$(postgres_bin)
cargo build --release -q -p streamhouse

work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  [ -n "${sh_pid:-}" ] && kill "$sh_pid" 2>/dev/null || true
  [ -d "$work/pg" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The rows, deterministic.
python3 - "$rows" > "$work/bids.csv" <<'EOF'
import sys
channels = ["Google", "Facebook", "Baidu", "Apple"]
state = 0x2545F4914F6CDD1D
out = sys.stdout
for i in range(int(sys.argv[1])):
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    r = state >> 33
    seconds = 1700000000 + i // 1000
    out.write(f"{1000 + r % 1000},{r % 100000},{r % 10000000},{channels[r % 4]},"
              f"https://www.nexmark.com/item.htm?query={r % 5000},"
              f"2023-11-14 {seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{i % 1000:03d}\n")
EOF
chmod 644 "$work/bids.csv"
bytes=$(stat -c %s "$work/bids.csv")

# PostgreSQL: its own cluster on a free port, as the postgres user (initdb refuses root).
pg_port=$(free_port)
mkdir "$work/pg" && chown postgres "$work/pg"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" -l "$work/pg/server.log" -w start >/dev/null

# StreamHouse on its defaults, its own data directory.
sh_port=$(free_port)
./target/release/streamhouse serve --data-dir "$work/sh" --pg-listen "127.0.0.1:$sh_port" --http-listen "127.0.0.1:$(free_port)" \
  > "$work/sh.log" 2>&1 &
sh_pid=$!
for _ in $(seq 100); do psql -h 127.0.0.1 -p "$sh_port" -U streamhouse -d streamhouse -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

columns="auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, date_time TIMESTAMP"
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE TABLE bids ($columns)"
psql -q -h 127.0.0.1 -p "$sh_port" -U streamhouse -d streamhouse -c "CREATE TOPIC bids ($columns)"

# Median wall time (ms) of ROUNDS loads into one server.
load() {
  local port=$1 user=$2 db=$3 times=()
  for _ in $(seq "$rounds"); do
    local start end
    start=$(date +%s%N)
    psql -q -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -c "\\copy bids FROM '$work/bids.csv' WITH (FORMAT csv)" >/dev/null
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"
}

pg_ms=$(load "$pg_port" postgres postgres)
sh_ms=$(load "$sh_port" streamhouse streamhouse)
pg_count=$(psql -tA -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c 'SELECT count(*) FROM bids')
sh_count=$(psql -tA -h 127.0.0.1 -p "$sh_port" -U streamhouse -d streamhouse -c 'SELECT count(*) FROM bids')
expected=$(( rows * rounds ))
[ "$pg_count" -eq "$expected" ] && [ "$sh_count" -eq "$expected" ] || { echo "row counts differ: postgres $pg_count, streamhouse $sh_count, expected $expected" >&2; exit 1; }

python3 - "$rows" "$bytes" "$pg_ms" "$sh_ms" "$("$pg_bin/postgres" --version)" <<'REPORT'
import sys
rows, size, pg, sh, version = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"COPY of {rows} CSV rows ({size / 1e6:.1f} MB), median of the loads, psql \\copy as the client")
print(f"  {version:<32} {pg:>8} ms  {rows / (pg / 1000):>12.0f} rows/s")
print(f"  {'StreamHouse':<32} {sh:>8} ms  {rows / (sh / 1000):>12.0f} rows/s")
ratio = pg / sh
print(f"ratio streamhouse vs postgresql: {ratio:.2f}x (target >= 3x: {'met' if ratio >= 3 else 'NOT met'})")
REPORT
