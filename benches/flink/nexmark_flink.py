#!/usr/bin/env python3
"""Apache Flink on the same Nexmark events as the StreamHouse harness, side by side.

    nexmark_flink.py DIR [--queries q0,q1] [--parallelism 2] [--streamhouse FILE] [--json FILE]

DIR is what `nexmark --oracle-dir DIR` wrote: the generated events as tab-separated text
(`{stream}.tsv`, `{stream}.columns`) and the views' final rows. For every query in
`benches/flink/q*.sql` (the harness's queries in Flink's SQL dialect) this runs Flink SQL in
streaming mode on a local mini cluster: the events read from CSV files (each stream cut into
`parallelism` files, rows dealt in turn so every file stays in event-time order, with the same
watermark as the harness's topics; Flink's event time has millisecond precision, so the
generator's microseconds are cut to milliseconds), the query written to a blackhole sink, timed from submission
until the job has finished (its bounded sources ended and the final watermark closed every
window). The same job over empty files is timed too: Flink's fixed cost of planning and
starting a job, reported apart. CPU time is that of the JVM (this process's children).

Each query's result is then counted by Flink in batch mode (`SELECT count(*) FROM (query)`) and
compared with the number of rows StreamHouse's view held (DIR/manifest.json), so a comparison is
only reported for queries both systems answer alike in size.

With `--streamhouse FILE` (the harness's `--json` output of an upstream run) a side-by-side
table follows: events per second of wall time and per CPU second, each system's ingest
included (Flink reads CSV; StreamHouse takes the events durably, through DoPut with
`--load flight`).

Needs PyFlink (`pip install apache-flink`, in a virtual environment of its own: it pins an older
pyarrow) and Java 11 or later; `benches/nexmark_vs_flink.sh` sets both up.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

FLINK_TYPES = {"BIGINT": "BIGINT", "VARCHAR": "STRING", "TIMESTAMP": "TIMESTAMP(3)", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN"}
STREAMS = ("person", "auction", "bid")


def columns(directory: Path, stream: str) -> list[tuple[str, str]]:
    """The stream's columns and their Flink types, from the harness's `.columns` file."""
    out = []
    for line in (directory / f"{stream}.columns").read_text().splitlines():
        name, kind = line.split(" ", 1)
        if kind not in FLINK_TYPES:
            raise SystemExit(f"{stream}.{name}: no Flink type for {kind}")
        out.append((name, FLINK_TYPES[kind]))
    return out


def write_csv(directory: Path, stream: str, files: int, target: Path) -> int:
    """`{stream}.tsv` as `files` header-less CSV files under `target/{stream}`, rows dealt in
    turn; timestamps as Flink's CSV format reads them. Returns the row count."""
    out_dir = target / stream
    out_dir.mkdir(parents=True)
    outs = [open(out_dir / f"part-{i}.csv", "w", encoding="utf-8") for i in range(files)]
    kinds = [kind for _, kind in columns(directory, stream)]
    stamp = [i for i, kind in enumerate(kinds) if kind.startswith("TIMESTAMP")]
    rows = 0
    with open(directory / f"{stream}.tsv", encoding="utf-8") as source:
        next(source)  # the header
        for line in source:
            cells = line.rstrip("\n").split("\t")
            for i in stamp:
                cells[i] = cells[i].replace("T", " ")
            if any("," in c or '"' in c for c in cells):
                cells = ['"' + c.replace('"', '""') + '"' for c in cells]
            outs[rows % files].write(",".join(cells) + "\n")
            rows += 1
    for out in outs:
        out.close()
    return rows


def source_ddl(directory: Path, stream: str, path: Path) -> str:
    cols = columns(directory, stream)
    body = ", ".join(f"`{name}` {kind}" for name, kind in cols)
    watermark = ", WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND" if any(n == "date_time" for n, _ in cols) else ""
    return (
        f"CREATE TABLE {stream} ({body}{watermark}) WITH ("
        f"'connector' = 'filesystem', 'path' = 'file://{path / stream}', 'format' = 'csv')"
    )


def query_text(path: Path) -> str:
    return "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("--")).strip()


def child_cpu_seconds() -> float:
    """User and system CPU seconds of every live descendant of this process (the JVM)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    me = os.getpid()
    total = 0
    for pid in ticks:
        p = pid
        while p in parents and p not in (0, 1):
            if parents[p] == me:
                total += ticks[pid]
                break
            p = parents[p]
    return total / os.sysconf("SC_CLK_TCK")


def environment(streaming: bool, parallelism: int):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    env = TableEnvironment.create(settings)
    config = env.get_config()
    config.set("parallelism.default", str(parallelism))
    config.set("table.exec.resource.default-parallelism", str(parallelism))
    return env


def timed_job(directory: Path, data: Path, sql: str, parallelism: int, name: str) -> tuple[float, float]:
    """Wall and CPU seconds of one streaming job from submission to its end."""
    env = environment(True, parallelism)
    for stream in STREAMS:
        env.execute_sql(source_ddl(directory, stream, data))
    cpu = child_cpu_seconds()
    started = time.monotonic()
    env.execute_sql(f"CREATE TABLE {name} WITH ('connector' = 'blackhole') AS {sql}").wait()
    return time.monotonic() - started, child_cpu_seconds() - cpu


def counted(directory: Path, data: Path, sql: str, parallelism: int) -> int | None:
    """Flink's result row count in batch mode, or None where batch mode refuses the query."""
    env = environment(False, parallelism)
    for stream in STREAMS:
        env.execute_sql(source_ddl(directory, stream, data))
    try:
        with env.execute_sql(f"SELECT count(*) FROM ({sql})").collect() as rows:
            return int(next(iter(rows))[0])
    except Exception as error:  # a construct batch mode lacks: reported, not hidden
        print(f"  batch count refused: {str(error).splitlines()[0][:200]}", file=sys.stderr)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--queries", default="all")
    parser.add_argument("--parallelism", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--streamhouse", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    directory = args.dir.resolve()
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("q*.sql"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
    if args.queries != "all":
        wanted = set(args.queries.split(","))
        files = [f for f in files if f.stem in wanted]
    manifest = {}
    if (directory / "manifest.json").exists():
        manifest = {o["query"]: o for o in json.loads((directory / "manifest.json").read_text())}

    data, empty = directory / "flink", directory / "flink-empty"
    for target in (data, empty):
        shutil.rmtree(target, ignore_errors=True)
    events = 0
    for stream in STREAMS:
        events += write_csv(directory, stream, args.parallelism, data)
        (empty / stream).mkdir(parents=True)
        (empty / stream / "part-0.csv").write_text("")
    print(f"{events} events as CSV in {data}, {args.parallelism} files per stream", file=sys.stderr)

    # The first job also starts the JVM's mini cluster and warms its JIT: not counted.
    timed_job(directory, empty, "SELECT * FROM bid", args.parallelism, "sink_warm_up")
    results = []
    for path in files:
        query = path.stem
        sql = query_text(path)
        print(f"{query}: running", file=sys.stderr)
        fixed, _ = timed_job(directory, empty, sql, args.parallelism, f"sink_{query}_empty")
        seconds, cpu = timed_job(directory, data, sql, args.parallelism, f"sink_{query}")
        rows = counted(directory, data, sql, args.parallelism)
        ours = manifest.get(query, {})
        view_rows = next((ours[m]["result_rows"] for m in ("upstream", "snapshot") if ours.get(m)), None)
        check = "n/a" if rows is None or view_rows is None else ("equal" if rows == view_rows else f"DIFFERENT (Flink {rows}, StreamHouse {view_rows})")
        results.append({"query": query, "seconds": seconds, "cpu_seconds": cpu, "startup_seconds": fixed, "result_rows": rows, "check": check})
        print(f"{query}: {seconds:.2f} s (the empty job: {fixed:.2f} s), {cpu:.2f} s CPU, {rows} rows, check {check}", file=sys.stderr)

    report = {"events": events, "parallelism": args.parallelism, "queries": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"\nApache Flink, {events} events, parallelism {args.parallelism}")
    print(f"{'query':<6} {'seconds':>8} {'startup':>8} {'CPU s':>8} {'rows':>9}  check")
    for r in results:
        print(f"{r['query']:<6} {r['seconds']:>8.2f} {r['startup_seconds']:>8.2f} {r['cpu_seconds']:>8.2f} {str(r['result_rows']):>9}  {r['check']}")
    if args.streamhouse:
        compare(json.loads(args.streamhouse.read_text()), results, events)
    return 1 if any(r["check"].startswith("DIFFERENT") for r in results) else 0


def compare(streamhouse: list[dict], flink: list[dict], events: int) -> None:
    """Events per second of wall time and per CPU second, both systems, ingest included."""
    ours = {o["query"]: o for o in streamhouse}
    print(f"\nside by side, {events} events, ingest included (ratio: StreamHouse / Flink)")
    print(f"{'query':<6} {'SH events/s':>12} {'Flink events/s':>15} {'wall ratio':>11} {'Flink w/o startup':>18} {'SH events/CPU s':>16} {'Flink events/CPU s':>19} {'CPU ratio':>10}")
    for f in flink:
        o = ours.get(f["query"], {})
        run = o.get("upstream")
        if not run:
            print(f"{f['query']:<6} StreamHouse: {o.get('status', 'not run')}")
            continue
        sh_cpu = run["cpu_seconds"] + run.get("ingest_cpu_seconds", 0.0)
        sh_rate, sh_cpu_rate = events / run["seconds"], events / max(sh_cpu, 1e-9)
        fl_rate, fl_cpu_rate = events / f["seconds"], events / max(f["cpu_seconds"], 1e-9)
        fl_net = events / max(f["seconds"] - f["startup_seconds"], 1e-9)
        print(
            f"{f['query']:<6} {sh_rate:>12,.0f} {fl_rate:>15,.0f} {sh_rate / fl_rate:>10.2f}x {sh_rate / fl_net:>17.2f}x "
            f"{sh_cpu_rate:>16,.0f} {fl_cpu_rate:>19,.0f} {sh_cpu_rate / fl_cpu_rate:>9.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
