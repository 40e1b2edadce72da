#!/usr/bin/env bash
# Connection setup with authentication: StreamHouse against PostgreSQL on the same machine, same
# client, same password method.
#
# Starts a throwaway PostgreSQL cluster (Debian's `postgresql`, installed if missing) whose
# pg_hba.conf asks scram-sha-256 of every TCP connection (password_encryption scram-sha-256, 4096
# iterations: PostgreSQL's defaults), and a StreamHouse server with --auth scram, each with a
# role `bench` and the same password. psycopg (libpq) then opens CONNECTIONS connections one after
# another to each, runs SELECT 1 on each and closes it; also without a password (trust) to show
# what SCRAM itself costs, and with TLS (sslmode=require; both servers with the same throwaway
# certificate, libpq then binds the channel: SCRAM-SHA-256-PLUS). Reports the median and p99 per
# connection and the ratios.
#
#   benches/connect_vs_postgres.sh [CONNECTIONS]
# STREAMHOUSE_BIN picks the server binary (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
connections=${1:-500}
pg_bin=$(postgres_bin)
source benches/common.sh
password=bench-password

# One certificate for both servers (openssl; the key readable by postgres only).
p256=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "${p256[@]}" \
  -keyout "$work/server.key" -out "$work/server.pem" 2>/dev/null
cp "$work/server.key" "$work/pg-server.key" && chown postgres "$work/pg-server.key" && chmod 600 "$work/pg-server.key"
chmod 644 "$work/server.pem"

# PostgreSQL: local socket trusted for setup, TCP from loopback by scram-sha-256.
pg_port=$(free_port)
mkdir "$work/pg" && chown postgres "$work/pg"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat > "$work/pg/pg_hba.conf" <<EOF
local all all trust
host all bench_trust 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
EOF
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$work/server.pem -c ssl_key_file=$work/pg-server.key" -l "$work/pg/server.log" -w start >/dev/null
psql -q -h "$work/pg" -p "$pg_port" -U postgres -d postgres -c "CREATE ROLE bench LOGIN PASSWORD '$password'" -c "CREATE ROLE bench_trust LOGIN"

# StreamHouse twice: SCRAM everywhere, and the default (loopback trusted).
sh_port=$(free_port)
sh_trust_port=$(free_port)
"$bin" serve --data-dir "$work/sh" --pg-listen "127.0.0.1:$sh_port" --http-listen "127.0.0.1:0" --flight-listen "127.0.0.1:0" \
  --auth scram --superuser-password "$password" --tls-cert "$work/server.pem" --tls-key "$work/server.key" > "$work/sh.out" 2> "$work/sh.log" &
pids="$!"
"$bin" serve --data-dir "$work/sh2" --pg-listen "127.0.0.1:$sh_trust_port" --http-listen "127.0.0.1:0" --flight-listen "127.0.0.1:0" \
  > "$work/sh2.out" 2> "$work/sh2.log" &
pids="$pids $!"
for out in "$work/sh.out" "$work/sh2.out"; do
  for _ in $(seq 600); do grep -q "streamhouse ready" "$out" 2>/dev/null && break; sleep 0.1; done
done
PGPASSWORD=$password psql -q -h 127.0.0.1 -p "$sh_port" -U streamhouse -d streamhouse -c "CREATE ROLE bench LOGIN PASSWORD '$password'"

python3 - "$connections" "$pg_port" "$sh_port" "$sh_trust_port" "$password" <<'EOF'
import statistics, sys, time
import psycopg

n, pg_port, sh_port, sh_trust_port, password = int(sys.argv[1]), *sys.argv[2:5], sys.argv[5]

def run(port, user, password, db, sslmode="disable"):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=db, sslmode=sslmode) as conn:
            conn.execute("SELECT 1").fetchone()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]

rows = [
    ("PostgreSQL, scram-sha-256", run(pg_port, "bench", password, "postgres")),
    ("StreamHouse, --auth scram", run(sh_port, "bench", password, "streamhouse")),
    ("PostgreSQL, trust", run(pg_port, "bench_trust", "", "postgres")),
    ("StreamHouse, loopback trust", run(sh_trust_port, "streamhouse", "", "streamhouse")),
    ("PostgreSQL, scram + TLS", run(pg_port, "bench", password, "postgres", "require")),
    ("StreamHouse, scram + TLS", run(sh_port, "bench", password, "streamhouse", "require")),
]
print(f"{n} connections one after another (connect, SELECT 1, close), psycopg {psycopg.__version__}")
for name, (median, p99) in rows:
    print(f"  {name:30} median {median:7.2f} ms   p99 {p99:7.2f} ms")
print(f"StreamHouse / PostgreSQL median with SCRAM: {rows[1][1][0] / rows[0][1][0]:.2f}; "
      f"SCRAM's own cost: StreamHouse +{rows[1][1][0] - rows[3][1][0]:.2f} ms, PostgreSQL +{rows[0][1][0] - rows[2][1][0]:.2f} ms")
print(f"StreamHouse / PostgreSQL median with SCRAM and TLS: {rows[5][1][0] / rows[4][1][0]:.2f}; "
      f"TLS's own cost: StreamHouse +{rows[5][1][0] - rows[1][1][0]:.2f} ms, PostgreSQL +{rows[4][1][0] - rows[0][1][0]:.2f} ms")
EOF
