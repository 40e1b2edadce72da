#!/usr/bin/env bash
# What TLS costs on the data path: COPY FROM (ingest) and COPY TO (scan) of the same rows through
# the same StreamHouse server, over plain TCP and over TLS, in alternating rounds.
#
# Makes a throwaway certificate authority and server certificate with openssl, starts one
# StreamHouse release server with --tls-cert/--tls-key, writes a CSV of ROWS rows, and ROUNDS
# times loads it with psql's \copy into a fresh topic and reads the topic back with
# \copy … TO '/dev/null' — once with sslmode=disable, once with sslmode=require (TLS 1.3,
# libpq's default cipher). Reports the median wall time of each and the TLS / plain ratios
# (target: within 1.10).
#
#   benches/tls_overhead.sh [ROWS] [ROUNDS]
# STREAMHOUSE_BIN picks the server binary (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

rows=${1:-1000000}
rounds=${2:-5}
bin=${STREAMHOUSE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p streamhouse
  bin=./target/release/streamhouse
fi

work=$(mktemp -d)
cleanup() {
  [ -n "${sh_pid:-}" ] && { kill "$sh_pid" 2>/dev/null; wait "$sh_pid" 2>/dev/null; } || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

p256=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 -days 2 -subj /CN=bench-ca "${p256[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -new -subj /CN=localhost "${p256[@]}" -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$work/server.ext"
openssl x509 -req -days 2 -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null

python3 - "$rows" > "$work/rows.csv" <<'EOF'
import sys
out = sys.stdout
for i in range(int(sys.argv[1])):
    out.write(f"{i},{i * 7919 % 100003},bidder number {i % 5003},https://www.nexmark.com/item.htm?query={i % 4999}\n")
EOF
bytes=$(stat -c %s "$work/rows.csv")

port=$(free_port)
"$bin" serve --data-dir "$work/sh" --pg-listen "127.0.0.1:$port" --http-listen "127.0.0.1:0" --flight-listen "127.0.0.1:0" \
  --tls-cert "$work/server.pem" --tls-key "$work/server.key" > "$work/sh.out" 2> "$work/sh.log" &
sh_pid=$!
for _ in $(seq 600); do grep -q "streamhouse ready" "$work/sh.out" 2>/dev/null && break; sleep 0.1; done

sql() { # MODE SQL…
  local mode=$1; shift
  PGSSLMODE=$mode PGSSLROOTCERT="$work/ca.pem" psql -X -q -h localhost -p "$port" -U streamhouse -d streamhouse -v ON_ERROR_STOP=1 "$@"
}
# Proof that the two modes differ: libpq reports the protocol it negotiated.
sql require -c '\conninfo' | grep -q 'SSL connection (protocol: TLSv1.3' || { echo "TLS was not negotiated" >&2; exit 1; }
sql disable -c '\conninfo' | grep -q 'SSL connection' && { echo "plain connection used TLS" >&2; exit 1; }

python3 - "$rows" "$rounds" "$bytes" "$port" "$work" <<'EOF'
import os, statistics, subprocess, sys, time

rows, rounds, size, port, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
env = dict(os.environ, PGSSLROOTCERT=f"{work}/ca.pem")

def psql(mode, command):
    start = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-h", "localhost", "-p", port, "-U", "streamhouse", "-d", "streamhouse",
                    "-v", "ON_ERROR_STOP=1", "-c", command], env=dict(env, PGSSLMODE=mode), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start

times = {}
for round in range(rounds):
    for mode in ["disable", "require"]:
        topic = f"t_{mode}_{round}"
        psql(mode, f"CREATE TOPIC {topic} (id BIGINT NOT NULL, price BIGINT, bidder TEXT, url TEXT)")
        times.setdefault(("ingest", mode), []).append(psql(mode, f"\\copy {topic} FROM '{work}/rows.csv' CSV"))
        times.setdefault(("scan", mode), []).append(psql(mode, f"\\copy {topic} TO '/dev/null' CSV"))

print(f"{rows} rows ({size} bytes of CSV), {rounds} rounds, median of psql \\copy (one server, modes alternating)")
for what in ["ingest", "scan"]:
    plain, tls = statistics.median(times[(what, "disable")]), statistics.median(times[(what, "require")])
    print(f"  {what:6} plain {plain:7.3f} s ({size / plain / 1e6:6.1f} MB/s)   TLS {tls:7.3f} s ({size / tls / 1e6:6.1f} MB/s)   TLS / plain {tls / plain:.3f}")
EOF
