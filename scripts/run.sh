#!/usr/bin/env bash
# Builds StreamHouse (release) and runs it on its embedded defaults: data in ./streamhouse-data,
# Postgres on 127.0.0.1:5433, HTTP on 127.0.0.1:8080. Extra arguments go to `streamhouse serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run --release --bin streamhouse -- serve "$@"
