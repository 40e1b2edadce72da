# Shared by the benchmark scripts that run StreamHouse beside PostgreSQL; sourced after
# scripts/prerequisites.sh. Sets `bin` (STREAMHOUSE_BIN, or a release build made here) and `work`
# (a directory removed at exit, after the servers whose process ids are in `pids` and the
# PostgreSQL cluster in "$work/pg" are stopped), and defines free_port.
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

bin=${STREAMHOUSE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p streamhouse
  bin=./target/release/streamhouse
fi

work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  for pid in ${pids:-}; do kill "$pid" 2>/dev/null || true; done
  [ -d "$work/pg" ] && runuser -u postgres -- "$(postgres_bin)/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
