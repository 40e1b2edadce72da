"""The independent correctness oracle of the Nexmark harness.

Usage: python3 benches/oracle/nexmark_duckdb.py DIR, where DIR was written by
`nexmark --oracle-dir DIR`: the generated events (person, auction, bid as .tsv with .columns),
each supported query's view rows per mode (qN.snapshot.tsv, qN.upstream.tsv) and manifest.json.

For every query the harness ran, DuckDB computes the result from the events with the plain-SQL
rewrite in benches/nexmark/duckdb/qN.sql (window functions spelled out: session ids from gaps,
ties broken the way StreamHouse breaks them), and the view's rows must equal it as a multiset:
integers and strings exactly, floating point to 9 significant digits, timestamps as text.
Prints one line per query and mode, and exits non-zero on any difference.
"""

import collections
import datetime
import decimal
import json
import pathlib
import sys

import duckdb

REWRITES = pathlib.Path(__file__).resolve().parent.parent / "nexmark" / "duckdb"


def columns(path):
    pairs = [line.split(" ", 1) for line in path.read_text().splitlines() if line.strip()]
    return {name: kind for name, kind in pairs}


def load(con, directory, name):
    spec = columns(directory / f"{name}.columns")
    # Timestamps are read as text and cast: ISO text with or without a fraction.
    raw = {column: ("VARCHAR" if kind == "TIMESTAMP" else kind) for column, kind in spec.items()}
    select = ", ".join(f"CAST({c} AS TIMESTAMP) AS {c}" if kind == "TIMESTAMP" else c for c, kind in spec.items())
    con.execute(
        f"CREATE TABLE {name} AS SELECT {select} FROM read_csv(?, delim='\\t', header=true, quote='', escape='', "
        f"nullstr='\\N', columns={raw!r})",
        [str(directory / f"{name}.tsv")],
    )


def cell(value):
    """A value as comparable text: numbers by value, timestamps without the ISO 'T'."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, decimal.Decimal)):
        return f"{float(value):.9g}"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    text = str(value)
    for parse in (int, float):
        try:
            number = parse(text)
        except ValueError:
            continue
        return str(number) if parse is int else f"{number:.9g}"
    if len(text) >= 19 and text[4] == "-" and text[10] == "T":
        try:
            return datetime.datetime.fromisoformat(text).isoformat(sep=" ")
        except ValueError:
            pass
    return text


def view_rows(path):
    lines = path.read_text().splitlines()[1:]
    return collections.Counter(tuple(cell(None if v == "\\N" else v) for v in line.split("\t")) for line in lines)


def main():
    directory = pathlib.Path(sys.argv[1])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in ("person", "auction", "bid"):
        load(con, directory, name)
    manifest = json.loads((directory / "manifest.json").read_text())
    failures = 0
    for entry in manifest:
        if entry["status"] != "ok":
            continue
        query = entry["query"]
        rewrite = REWRITES / f"{query}.sql"
        if not rewrite.exists():
            print(f"{query}: NO ORACLE (write benches/nexmark/duckdb/{query}.sql)")
            failures += 1
            continue
        expected = collections.Counter(tuple(cell(v) for v in row) for row in con.execute(rewrite.read_text()).fetchall())
        for mode in ("snapshot", "upstream"):
            if entry.get(mode) is None:
                continue
            path = directory / f"{query}.{mode}.tsv"
            actual = view_rows(path) if path.exists() else collections.Counter()
            if actual == expected:
                print(f"{query} {mode}: equal ({sum(actual.values())} rows)")
            else:
                failures += 1
                missing = list((expected - actual).items())[:3]
                extra = list((actual - expected).items())[:3]
                print(f"{query} {mode}: DIFFERENT: {sum(expected.values())} rows from DuckDB, {sum(actual.values())} in the view; "
                      f"missing {missing}, extra {extra}")
    print(f"oracle: {failures} difference(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
