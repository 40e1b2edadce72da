"""pyarrow.flight against a running StreamHouse: topics listed, read by partition in parallel,
written with DoPut and acknowledged with their offsets; bad schemas and tickets refused; views
read and subscribed to. psycopg (over the Postgres protocol) writes and checks the same rows, so
a row written over one protocol is seen over the other."""

import json
import os
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pyarrow as pa
import pyarrow.flight as flight

PG_PORT = int(os.environ["STREAMHOUSE_PG_PORT"])
FLIGHT_PORT = int(os.environ["STREAMHOUSE_FLIGHT_PORT"])
HTTP_PORT = int(os.environ["STREAMHOUSE_HTTP_PORT"])


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/metrics").read().decode()
    return next(int(float(line.split()[1])) for line in text.splitlines() if line.split()[:1] == [name])


# pyarrow raises by gRPC code: INVALID_ARGUMENT as ArrowInvalid, NOT_FOUND as ArrowKeyError.
def expect_error(kind, fragment, call):
    try:
        call()
    except kind as error:
        assert fragment in str(error), f"expected {fragment!r} in {error}"
        return error
    raise AssertionError(f"expected {kind.__name__} with {fragment!r}")


def read_endpoint(client, endpoint):
    return client.do_get(endpoint.ticket).read_all()


def main():
    pg = psycopg.connect(host="127.0.0.1", port=PG_PORT, user="streamhouse", dbname="streamhouse", autocommit=True)
    client = flight.connect(f"grpc://127.0.0.1:{FLIGHT_PORT}")

    # Rows written over pgwire, read over Flight.
    pg.execute(
        "CREATE TOPIC flight_bids (auction BIGINT NOT NULL, price DOUBLE PRECISION, bidder TEXT)"
        " WITH (partitions = 3, partition_key = 'auction')"
    )
    written = [(i % 17, i * 0.5, f"bidder {i}" if i % 5 else None) for i in range(600)]
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO flight_bids VALUES (%s, %s, %s)", written)

    names = {info.descriptor.path[0].decode() for info in client.list_flights()}
    assert "flight_bids" in names, names

    info = client.get_flight_info(flight.FlightDescriptor.for_path("flight_bids"))
    assert info.total_records == len(written), info.total_records
    assert len(info.endpoints) == 3, info.endpoints
    assert info.schema.names == ["auction", "price", "bidder", "_partition", "_offset", "_timestamp"], info.schema
    assert info.schema.field("auction").type == pa.int64() and not info.schema.field("auction").nullable
    assert client.get_schema(flight.FlightDescriptor.for_path("flight_bids")).schema == info.schema

    # Partitions read in parallel add up to every row written, each partition's offsets dense.
    with ThreadPoolExecutor(3) as pool:
        tables = list(pool.map(lambda e: read_endpoint(client, e), info.endpoints))
    rows = []
    for table in tables:
        partitions = set(table.column("_partition").to_pylist())
        assert len(partitions) <= 1, partitions
        assert table.column("_offset").to_pylist() == list(range(table.num_rows)), "offsets from 0, dense, in order"
        rows += zip(*(table.column(n).to_pylist() for n in ("auction", "price", "bidder")))
    assert sorted(rows, key=repr) == sorted(written, key=repr)
    # One auction's rows are all in one partition (the partition key).
    homes = {}
    for table in tables:
        for auction, partition in zip(table.column("auction").to_pylist(), table.column("_partition").to_pylist()):
            assert homes.setdefault(auction, partition) == partition

    # The same endpoints' tickets with LZ4-compressed IPC accepted: the same rows.
    def lz4_ticket(endpoint):
        ticket = json.loads(endpoint.ticket.ticket)
        ticket["compression"] = "lz4_frame"
        return flight.Ticket(json.dumps(ticket).encode())

    for endpoint, table in zip(info.endpoints, tables):
        assert client.do_get(lz4_ticket(endpoint)).read_all().equals(table)
    expect_error(pa.ArrowInvalid, "malformed ticket", lambda: client.do_get(
        flight.Ticket(json.dumps({"topic": "flight_bids", "partition": 0, "compression": "zstd"}).encode())).read_all())

    # A hand-written ticket for a range of offsets.
    ticket = flight.Ticket(json.dumps({"topic": "flight_bids", "partition": 0, "start": 1, "end": 3}).encode())
    part = client.do_get(ticket).read_all()
    assert part.column("_offset").to_pylist() == [1, 2], part
    assert part.num_rows == 2

    # DoPut: each batch acknowledged with where its rows went, then visible over pgwire.
    schema = pa.schema([pa.field("auction", pa.int64(), nullable=False), ("price", pa.float64()), ("bidder", pa.string())])
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("flight_bids"), schema)
    put_rows = []
    for b in range(5):
        auctions = [1000 + b * 1000 + i for i in range(1000)]
        batch = pa.record_batch([pa.array(auctions, pa.int64()), pa.array([float(a) for a in auctions]), pa.array([None] * 1000, pa.string())], schema=schema)
        writer.write_batch(batch)
        ack = json.loads(reader.read().to_pybytes())
        assert ack["rows"] == 1000, ack
        assert sum(p[2] for p in ack["placements"]) == 1000, ack
        assert all(0 <= p[0] < 3 for p in ack["placements"]), ack
        put_rows += auctions
    writer.done_writing()
    writer.close()
    count, total = pg.execute("SELECT count(*), sum(auction) FROM flight_bids WHERE auction >= 1000").fetchone()
    assert (count, total) == (len(put_rows), sum(put_rows)), (count, total)

    # DoPut of LZ4-compressed IPC, as pyarrow writes it (buffers aligned to 8 bytes): batches of
    # 2000 rows to a round-robin topic are stored as sent, not encoded again; the rows read back
    # the same over pgwire and over Flight.
    pg.execute("CREATE TOPIC flight_lz4 (id BIGINT NOT NULL, name TEXT) WITH (partitions = 2)")
    lz4_schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])
    lz4_options = flight.FlightCallOptions(write_options=pa.ipc.IpcWriteOptions(compression="lz4"))
    stored_before = metric("streamhouse_flight_stored_batches_received_total")
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("flight_lz4"), lz4_schema, options=lz4_options)
    lz4_rows = []
    for b in range(4):
        ids = list(range(b * 2000, (b + 1) * 2000))
        names = [f"name {i}" if i % 3 else None for i in ids]
        writer.write_batch(pa.record_batch([pa.array(ids, pa.int64()), pa.array(names, pa.string())], schema=lz4_schema))
        assert json.loads(reader.read().to_pybytes())["rows"] == 2000
        lz4_rows += zip(ids, names)
    writer.done_writing()
    writer.close()
    assert metric("streamhouse_flight_stored_batches_received_total") == stored_before + 4
    assert pg.execute("SELECT id, name FROM flight_lz4 ORDER BY id").fetchall() == lz4_rows
    lz4_info = client.get_flight_info(flight.FlightDescriptor.for_path("flight_lz4"))
    lz4_read = pa.concat_tables([read_endpoint(client, e) for e in lz4_info.endpoints]).sort_by("id")
    assert list(zip(lz4_read.column("id").to_pylist(), lz4_read.column("name").to_pylist())) == lz4_rows

    # Types that widen to the topic's (int32 into bigint, large_string into text) are taken.
    widened = pa.schema([("auction", pa.int32()), ("price", pa.float32()), ("bidder", pa.large_string())])
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("flight_bids"), widened)
    writer.write_batch(pa.record_batch([pa.array([-1], pa.int32()), pa.array([1.5], pa.float32()), pa.array(["wide"], pa.large_string())], schema=widened))
    assert json.loads(reader.read().to_pybytes())["rows"] == 1
    writer.close()
    assert pg.execute("SELECT price, bidder FROM flight_bids WHERE auction = -1").fetchall() == [(1.5, "wide")]

    before = pg.execute("SELECT count(*) FROM flight_bids").fetchone()[0]
    # A schema that does not fit is refused before anything is appended, naming the column.
    wrong = pa.schema([("auction", pa.int64()), ("cost", pa.float64()), ("bidder", pa.string())])

    def put_wrong():
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("flight_bids"), wrong)
        writer.write_batch(pa.record_batch([pa.array([1]), pa.array([1.0]), pa.array(["x"])], schema=wrong))
        writer.close()

    expect_error(pa.ArrowInvalid, 'column 2 is "cost", expected "price"', put_wrong)
    text_price = pa.schema([("auction", pa.int64()), ("price", pa.string()), ("bidder", pa.string())])

    def put_text():
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("flight_bids"), text_price)
        writer.write_batch(pa.record_batch([pa.array([1]), pa.array(["1.0"]), pa.array(["x"])], schema=text_price))
        writer.close()

    expect_error(pa.ArrowInvalid, 'column "price" is Utf8, expected Float64', put_text)

    # A NULL where the topic says NOT NULL rejects that batch whole; the batch before it stays.
    nullable = pa.schema([("auction", pa.int64()), ("price", pa.float64()), ("bidder", pa.string())])

    def put_null():
        writer, reader = client.do_put(flight.FlightDescriptor.for_path("flight_bids"), nullable)
        writer.write_batch(pa.record_batch([pa.array([-7]), pa.array([7.0]), pa.array(["kept"])], schema=nullable))
        assert json.loads(reader.read().to_pybytes())["rows"] == 1
        writer.write_batch(pa.record_batch([pa.array([-8, None]), pa.array([8.0, 9.0]), pa.array(["x", "y"])], schema=nullable))
        reader.read()
        writer.close()

    expect_error(pa.ArrowInvalid, "violates not-null constraint", put_null)
    after = pg.execute("SELECT count(*) FROM flight_bids").fetchone()[0]
    assert after == before + 1, (before, after)
    assert pg.execute("SELECT count(*) FROM flight_bids WHERE auction = -8").fetchone()[0] == 0
    assert pg.execute("SELECT bidder FROM flight_bids WHERE auction = -7").fetchall() == [("kept",)]

    # Bad requests: a clear error, and the server goes on.
    expect_error(pa.ArrowInvalid, "malformed ticket", lambda: client.do_get(flight.Ticket(b'{"topic": 3}')).read_all())
    expect_error(pa.ArrowInvalid, "no partition 9", lambda: client.do_get(flight.Ticket(b'{"topic": "flight_bids", "partition": 9}')).read_all())
    expect_error(pa.ArrowKeyError, 'relation "nope" does not exist', lambda: client.get_flight_info(flight.FlightDescriptor.for_path("nope")))
    expect_error(pa.ArrowInvalid, "unknown ticket", lambda: client.do_get(flight.Ticket(b"\x00\x01garbage")).read_all())

    # A view: read whole by its path, equal to the same rows over pgwire. Its auctions: 0..16
    # over pgwire, 5000 by DoPut, -1 widened, -7 kept beside the refused batch.
    pg.execute("CREATE MATERIALIZED VIEW flight_per_auction AS SELECT auction, count(*) AS n FROM flight_bids GROUP BY auction")
    pg.execute("FLUSH")
    info = client.get_flight_info(flight.FlightDescriptor.for_path("flight_per_auction"))
    assert len(info.endpoints) == 1
    view = client.do_get(info.endpoints[0].ticket).read_all()
    over_flight = sorted(zip(view.column("auction").to_pylist(), view.column("n").to_pylist()))
    over_pg = sorted(pg.execute("SELECT auction, n FROM flight_per_auction").fetchall())
    assert over_flight == over_pg and len(over_pg) == 17 + 5000 + 2, (len(over_flight), len(over_pg))

    # A view's changes: the snapshot, then a change written over pgwire arrives live.
    reader = client.do_get(flight.Ticket(json.dumps({"subscribe": "flight_per_auction"}).encode()))
    assert "op" in reader.schema.names and "epoch" in reader.schema.names, reader.schema
    seen = 0
    while seen < len(over_pg):
        seen += reader.read_chunk().data.num_rows
    assert seen == len(over_pg), seen

    def insert_later():
        pg2 = psycopg.connect(host="127.0.0.1", port=PG_PORT, user="streamhouse", dbname="streamhouse", autocommit=True)
        pg2.execute("INSERT INTO flight_bids VALUES (123456, 1.0, 'live')")
        pg2.close()

    threading.Thread(target=insert_later).start()
    chunk = reader.read_chunk().data
    changes = list(zip(chunk.column("auction").to_pylist(), chunk.column("op").to_pylist()))
    assert (123456, "insert") in changes, changes
    reader.cancel()

    pg.close()
    print("pyarrow.flight: ok")


if __name__ == "__main__":
    main()
