// node-postgres against a running StreamHouse: bound parameters of every type (node-postgres
// sends them as text), results parsed by its type parsers and compared exactly.
const assert = require('node:assert/strict');
const { Client } = require('pg');

async function main() {
  const client = new Client({ host: '127.0.0.1', port: Number(process.env.STREAMHOUSE_PG_PORT), user: 'streamhouse', database: 'streamhouse' });
  await client.connect();
  await client.query(`CREATE TOPIC node_types (id BIGINT NOT NULL, b BOOLEAN, i2 SMALLINT, i4 INTEGER, i8 BIGINT,
    f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(12,4), t TEXT, by BYTEA, d DATE, tm TIME, ts TIMESTAMP,
    tz TIMESTAMPTZ, iv INTERVAL, j JSONB, ai INTEGER[], at TEXT[])`);
  const full = [1, true, -32768, 2147483647, '9223372036854775807', 0.5, Math.PI, '-12345678.1234',
    'héllo wörld ✓ 日本', Buffer.from([0, 1, 0xfe, 0xff]), '2024-02-29', '23:59:58.123456',
    '2024-01-02 03:04:05.678901', new Date(Date.UTC(2024, 5, 30, 12, 0, 0, 123)), '3 days 04:00:00',
    { a: [1, 2, { b: null }], c: 'd' }, [1, null, -3], ['x', 'with space', 'quote"d', null]];
  const empty = [2, ...Array(17).fill(null)];
  const placeholders = full.map((_, i) => `$${i + 1}`).join(', ');
  for (const row of [full, empty]) {
    const result = await client.query(`INSERT INTO node_types VALUES (${placeholders})`, row);
    assert.equal(result.rowCount, 1);
  }
  const { rows } = await client.query('SELECT * FROM node_types WHERE id >= $1 ORDER BY id', [1]);
  assert.equal(rows.length, 2);
  const r = rows[0];
  assert.equal(r.id, '1'); // int8 comes back as a string in node-postgres
  assert.equal(r.b, true);
  assert.equal(r.i2, -32768);
  assert.equal(r.i4, 2147483647);
  assert.equal(r.i8, '9223372036854775807');
  assert.equal(r.f4, 0.5);
  assert.equal(r.f8, Math.PI);
  assert.equal(r.n, '-12345678.1234');
  assert.equal(r.t, 'héllo wörld ✓ 日本');
  assert.deepEqual(r.by, Buffer.from([0, 1, 0xfe, 0xff]));
  assert.equal(r.tm, '23:59:58.123456');
  assert.equal(r.tz.toISOString(), '2024-06-30T12:00:00.123Z');
  assert.deepEqual({ ...r.iv }, { days: 3, hours: 4 });
  assert.deepEqual(r.j, { a: [1, 2, { b: null }], c: 'd' });
  assert.deepEqual(r.ai, [1, null, -3]);
  assert.deepEqual(r.at, ['x', 'with space', 'quote"d', null]);
  // DATE and TIMESTAMP without zone are parsed in local time; compare the server's text.
  const raw = { getTypeParser: () => (value) => value };
  const text = await client.query({ text: 'SELECT d, ts, tz FROM node_types WHERE id = 1', types: raw });
  assert.deepEqual(text.rows[0], { d: '2024-02-29', ts: '2024-01-02 03:04:05.678901', tz: '2024-06-30 12:00:00.123+00' });
  for (const [key, value] of Object.entries(rows[1])) {
    if (key !== 'id') assert.equal(value, null, `${key} is NULL`);
  }
  await assert.rejects(client.query('SELECT * FROM missing_topic'), (e) => e.code === '42P01');
  // 1 + 1 is int4, as PostgreSQL types it, so node-postgres returns a number (int8 is a string).
  const one = await client.query('SELECT 1 + 1 AS two, 9000000000 + 1 AS big');
  assert.strictEqual(one.rows[0].two, 2);
  assert.strictEqual(one.rows[0].big, '9000000001');
  await client.end();
  console.log('node-postgres: ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
