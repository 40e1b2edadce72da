"""Rows every Python client test writes and expects back, with the topic that holds them."""

import datetime as dt
from decimal import Decimal

UTC = dt.timezone.utc

COLUMNS = (
    "id BIGINT NOT NULL, b BOOLEAN, i2 SMALLINT, i4 INTEGER, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, "
    "n NUMERIC(12,4), t TEXT, v VARCHAR, by BYTEA, d DATE, tm TIME, ts TIMESTAMP, tz TIMESTAMPTZ, "
    "iv INTERVAL, j JSONB, ai INTEGER[], at TEXT[]"
)

NAMES = ["id", "b", "i2", "i4", "i8", "f4", "f8", "n", "t", "v", "by", "d", "tm", "ts", "tz", "iv", "j", "ai", "at"]

ROWS = [
    (
        1, True, 12, 123456, 9_007_199_254_740_993, 0.5, 3.141592653589793, Decimal("12345678.1234"),
        "héllo wörld ✓ 日本", "varchar value", b"\x00\x01\xfe\xff", dt.date(2024, 2, 29),
        dt.time(23, 59, 58, 123456), dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        dt.datetime(2024, 6, 30, 12, 0, 0, 1, tzinfo=UTC), dt.timedelta(days=3, hours=4, microseconds=5),
        {"a": [1, 2, {"b": None}], "c": "d"}, [1, None, -3], ["x", "with space", "quote\"d", None],
    ),
    (
        2, False, -32768, -2147483648, -9_223_372_036_854_775_808, -1.25, -0.0001, Decimal("-0.0001"),
        "", "", b"", dt.date(1970, 1, 1), dt.time(0, 0, 0), dt.datetime(1999, 12, 31, 23, 59, 59),
        dt.datetime(2000, 1, 1, 0, 0, 0, tzinfo=UTC), dt.timedelta(seconds=-1), [], [], [],
    ),
    (3,) + (None,) * 18,
]


def project(names):
    """ROWS restricted to the given columns, in that order."""
    return [tuple(row[NAMES.index(n)] for n in names) for row in ROWS]


def columns_of(names):
    """The column definitions for the given columns."""
    definitions = [c.strip() for c in COLUMNS.split(", ")]
    return ", ".join(d for d in definitions if d.split()[0] in names)


def check_rows(actual, names=NAMES):
    """Compares rows read back with ROWS (projected on `names`), value by value and exactly."""
    expected_rows = project(names)
    assert len(actual) == len(expected_rows), f"expected {len(expected_rows)} rows, got {len(actual)}"
    for expected, got in zip(expected_rows, sorted(actual, key=lambda r: r[0])):
        for name, e, g in zip(names, expected, got):
            if isinstance(g, memoryview):
                g = bytes(g)
            if isinstance(e, float) and name == "f4":
                assert g is not None and abs(g - e) == 0, f"{name}: expected {e!r}, got {g!r}"
                continue
            assert e == g and type(e) is type(g) or (e is None and g is None), (
                f"row {expected[0]} column {name}: expected {e!r} ({type(e).__name__}), got {g!r} ({type(g).__name__})"
            )
