#!/usr/bin/env python3
"""Writes the corpus figures of docs/postgres-compatibility.md from the report that
tests/postgres_oracle.rs leaves in target/tmp/postgres-oracle.md (run that test first)."""
import re
import sys

REPORT = "target/tmp/postgres-oracle.md"
DOC = "docs/postgres-compatibility.md"
BEGIN = "<!-- corpus figures: scripts/compatibility-report.py writes from here -->"
END = "<!-- corpus figures end -->"

HEADINGS = {
    "Wrong": "Wrong answers not yet mended (listed with their reasons in `tests/oracle/known_wrong.txt`)",
    "Refused": "Refused: PostgreSQL answers, StreamHouse gives an error",
    "OtherError": "Both refuse, with another SQLSTATE",
    "NamesOrTypes": "Same values, other column names or type OIDs",
    "Formatting": "Same values, written otherwise",
    "Lenient": "Accepted by StreamHouse, a syntax error in PostgreSQL",
}

text = open(REPORT).read()
summary = text.splitlines()[0]
entries = re.findall(r"^- (\w+): `(.*)`\n  - PostgreSQL: (.*)\n  - StreamHouse: (.*)$", text, re.M)
out = [BEGIN, "", f"Last run: {summary.split(';')[0]}.", ""]
for verdict, heading in HEADINGS.items():
    rows = [e for e in entries if e[0] == verdict]
    if not rows:
        continue
    out += [f"### {heading} ({len(rows)})", "", "| query | PostgreSQL | StreamHouse |", "|---|---|---|"]
    for _, sql, postgres, ours in rows:
        cell = lambda s: s.replace("|", "\\|").replace("\n", " ")[:140]
        out.append(f"| `{cell(sql)}` | {cell(postgres)} | {cell(ours)} |")
    out.append("")
out.append(END)
doc = open(DOC).read()
start, stop = doc.index(BEGIN), doc.index(END) + len(END)
open(DOC, "w").write(doc[:start] + "\n".join(out) + doc[stop:])
print(summary, file=sys.stderr)
