#!/usr/bin/env bash
# Soak benchmark: tests/load.rs (CONNECTIONS connections writing small batches to four topics
# and reading counts and views, two views aggregating) for SECONDS against a release server.
# Prints the server's resident memory over time and the ratio of the last minute's peak to the
# peak of the second minute (the baseline, after warm-up, measured in the same run): about 1.0
# means memory levelled off. The test itself fails on any error or on a view that differs from
# its topic after FLUSH.
#
#   benches/soak.sh [SECONDS] [CONNECTIONS]      (defaults: 600, 200)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
connections=${2:-200}
source scripts/prerequisites.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
bin=${STREAMHOUSE_BIN:-target/release/streamhouse}
if [ ! -x "$bin" ]; then
  cargo build --release -p streamhouse -p streamhouse-benches --bins --benches
fi
out=$(mktemp)
STREAMHOUSE_BIN="$bin" STREAMHOUSE_LOAD_SECONDS="$seconds" STREAMHOUSE_LOAD_CONNECTIONS="$connections" \
  cargo test --workspace --test load -- --nocapture 2>&1 | tee "$out" | grep -E '^(load:|test result)' | cut -c1-300
python3 - "$out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rss = [(int(s), int(m)) for s, m in re.findall(r"(\d+)s=(\d+)MB", text)]
if not rss:
    sys.exit("no RSS samples in the output")
end = rss[-1][0]
warm = max(m for s, m in rss if 60 <= s < 120) if end >= 120 else max(m for s, m in rss[: len(rss) // 2])
last = max(m for s, m in rss if s > end - 60)
print(f"soak: RSS peak in the second minute {warm} MB, in the last minute {last} MB, ratio {last / warm:.2f}")
for minute in range(0, end + 1, 60):
    window = [m for s, m in rss if minute <= s < minute + 60]
    if window:
        print(f"soak: minute {minute // 60 + 1}: RSS {min(window)}–{max(window)} MB")
PY
grep -q "test result: ok" "$out"
