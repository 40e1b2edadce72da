"""What SQLAlchemy 2 (psycopg driver) and pandas learn of a database: the inspector's names,
columns, keys and indexes, a Core read of a reflected table, and pandas' read_sql /
read_sql_table. Prints one JSON document; tests/tools.rs runs this against StreamHouse and
against PostgreSQL with the same objects and compares the two.

Usage: inspect_sqlalchemy.py PORT
"""

import json
import sys

import pandas as pd
import sqlalchemy as sa

port = sys.argv[1]
engine = sa.create_engine(f"postgresql+psycopg://streamhouse@127.0.0.1:{port}/streamhouse")
inspector = sa.inspect(engine)


def columns(table):
    return [
        {"name": c["name"], "type": repr(c["type"]), "nullable": c["nullable"], "default": c["default"],
         "autoincrement": c["autoincrement"], "comment": c.get("comment")}
        for c in inspector.get_columns(table)
    ]


found = {
    "schemas": [s for s in inspector.get_schema_names() if s == "public"],
    "tables": sorted(inspector.get_table_names()),
    "views": sorted(inspector.get_view_names()),
    "materialized_views": sorted(inspector.get_materialized_view_names()),
    "has_table": [inspector.has_table("bids"), inspector.has_table("nothing")],
}
for table in ["bids", "people", "per_auction"]:
    found[table] = {
        "columns": columns(table),
        "primary_key": inspector.get_pk_constraint(table),
        "foreign_keys": inspector.get_foreign_keys(table),
        "indexes": inspector.get_indexes(table),
        "unique": inspector.get_unique_constraints(table),
        "check": inspector.get_check_constraints(table),
        "comment": inspector.get_table_comment(table),
    }

metadata = sa.MetaData()
people = sa.Table("people", metadata, autoload_with=engine)
bids = sa.Table("bids", metadata, autoload_with=engine)
with engine.connect() as connection:
    found["core"] = [list(r) for r in connection.execute(
        sa.select(people.c.id, people.c.name).where(people.c.id > 1).order_by(people.c.id))]
    found["core_join"] = [list(r) for r in connection.execute(
        sa.select(bids.c.auction, sa.func.count()).group_by(bids.c.auction).order_by(bids.c.auction))]
found["reflected"] = {name: [c.name for c in t.columns] for name, t in metadata.tables.items()}
found["primary_key_reflected"] = [c.name for c in people.primary_key.columns]

frame = pd.read_sql("SELECT auction, price FROM bids ORDER BY price", engine)
found["read_sql"] = {"columns": list(frame.columns), "dtypes": [str(t) for t in frame.dtypes], "rows": frame.astype(str).values.tolist()}
frame = pd.read_sql_table("bids", engine).sort_values("price")
found["read_sql_table"] = {"columns": list(frame.columns), "dtypes": [str(t) for t in frame.dtypes], "rows": frame.astype(str).values.tolist()}

print(json.dumps(found, indent=1, sort_keys=True, default=str))
