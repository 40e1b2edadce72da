#!/usr/bin/env bash
# The Nexmark queries on StreamHouse and on Apache Flink, on the same machine, the same events,
# in the same run. StreamHouse runs the harness's upstream mode (each view created over empty
# topics, then every event appended durably through Flight DoPut until FLUSH); Flink (PyFlink's
# local mini cluster, streaming mode) reads the same events from CSV files into the same query
# and a blackhole sink. Prints both tables and the side by side ratios (benches/flink/).
#
#   benches/nexmark_vs_flink.sh [EVENTS] [QUERIES]     (defaults: 10000000 and every query)
#
# NEXMARK_BIN: another build of the harness (the release build by default). FLINK_VENV: where
# PyFlink is installed (target/flink-venv by default, made on first use; it pins its own pyarrow,
# so it stays out of the system Python).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

events=${1:-10000000}
queries=${2:-q0,q1,q2,q11,q14,q15,q16,q17,q18,q19,q21,q22}
venv=${FLINK_VENV:-target/flink-venv}
command -v java >/dev/null 2>&1 || apt_install default-jdk-headless
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyflink" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'apache-flink==2.3.0'
fi
binary=${NEXMARK_BIN:-./target/release/nexmark}
[ -n "${NEXMARK_BIN:-}" ] || cargo build --release -q -p streamhouse-benches --bin nexmark

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$binary" --events "$events" --queries "$queries" --mode upstream --load flight \
  --oracle-dir "$work" --json "$work/streamhouse.json"
"$venv/bin/python" benches/flink/nexmark_flink.py "$work" --queries "$queries" \
  --streamhouse "$work/streamhouse.json" --json "${FLINK_JSON:-$work/flink.json}"
