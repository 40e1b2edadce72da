#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against real server processes, the
# sqllogictest suites over the wire, a differential test against a real PostgreSQL, real clients (psql, psycopg 3, asyncpg, pgjdbc,
# node-postgres, pyarrow.flight, the ADBC Flight SQL driver), S3 against moto, and the Nexmark harness against a DuckDB oracle. Installs what the tests need first. Ends with the totals.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh || exit 1
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

# Test clients and servers, by package name.
needed=()
command -v psql >/dev/null 2>&1 || needed+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || needed+=(postgresql)  # the oracle of tests/postgres_oracle.rs
command -v java >/dev/null 2>&1 || needed+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || needed+=(libpostgresql-jdbc-java)
command -v python3 >/dev/null 2>&1 || needed+=(python3)
python3 -m pip --version >/dev/null 2>&1 || needed+=(python3-pip)
command -v node >/dev/null 2>&1 || needed+=(nodejs)
command -v npm >/dev/null 2>&1 || needed+=(npm)
if [ "${#needed[@]}" -gt 0 ]; then
  echo "installing test prerequisites: ${needed[*]}" >&2
  apt_install "${needed[@]}" || exit 1
fi
python_packages=('psycopg[binary]>=3.1' 'asyncpg>=0.29' 'moto[server]>=5' 'duckdb>=1.1' 'pyarrow>=15' 'adbc-driver-flightsql>=1.0' 'adbc-driver-manager>=1.0' 'pandas>=2' 'sqlalchemy>=2')
python3 -c "import psycopg, asyncpg, moto, duckdb, pyarrow.flight, adbc_driver_flightsql.dbapi, pandas, sqlalchemy" >/dev/null 2>&1 || \
  python3 -m pip install -q --disable-pip-version-check "${python_packages[@]}" >&2 || \
  python3 -m pip install -q --break-system-packages "${python_packages[@]}" >&2 || exit 1
if [ ! -d clients/node/node_modules/pg ]; then
  (cd clients/node && npm install --no-audit --no-fund --silent) >&2 || exit 1
fi

export TZ=UTC
log=$(mktemp)
started=$SECONDS
cargo build --workspace --all-targets 2>&1 | tail -n 3
built=$SECONDS
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
tested=$SECONDS

# One line with the totals of every test binary (cargo prints one per binary).
passed=$(grep -E '^(test result:|sql-tests:)' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^(test result:|sql-tests:)' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
# The slowest test binaries (cargo prints how long each took), then where the time went.
echo
echo "slowest test binaries:"
awk '/^     Running /{name=$2} /^test result:/{for(i=1;i<=NF;i++) if($i=="in"){t=$(i+1); sub(/s$/,"",t); printf "%8.1f s  %s\n", t, name}}' "$log" | sort -rn | head -n 8
echo "prerequisites $((started))s, build $((built - started))s, tests $((tested - built))s"
rm -f "$log"
echo
echo "tests: ${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
  exit 1
fi
