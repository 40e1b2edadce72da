// pgjdbc against a running StreamHouse: bound parameters of every type through a
// PreparedStatement, read back and compared exactly; errors carry SQLSTATEs.
// Run: java -cp /usr/share/java/postgresql.jar ClientTest.java (STREAMHOUSE_PG_PORT set).

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.*;
import java.time.*;
import java.util.Arrays;
import java.util.Objects;

public class ClientTest {
    static void check(boolean condition, String what) {
        if (!condition) throw new AssertionError(what);
    }

    static void same(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected <" + expected + "> got <" + actual + ">");
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("STREAMHOUSE_PG_PORT") + "/streamhouse";
        try (Connection conn = DriverManager.getConnection(url, "streamhouse", "")) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TOPIC jdbc_types (id BIGINT NOT NULL, b BOOLEAN, i2 SMALLINT, i4 INTEGER, "
                    + "i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(12,4), t TEXT, by BYTEA, d DATE, "
                    + "tm TIME, ts TIMESTAMP, tz TIMESTAMPTZ, iv INTERVAL, j JSONB, ai INTEGER[], at TEXT[])");
            }
            byte[] bytes = new byte[] {0, 1, (byte) 0xfe, (byte) 0xff};
            LocalDate date = LocalDate.of(2024, 2, 29);
            LocalTime time = LocalTime.of(23, 59, 58, 123456000);
            LocalDateTime timestamp = LocalDateTime.of(2024, 1, 2, 3, 4, 5, 678901000);
            OffsetDateTime timestamptz = OffsetDateTime.of(2024, 6, 30, 12, 0, 0, 1000, ZoneOffset.UTC);
            String text = "héllo wörld ✓ 日本";
            String json = "{\"a\": [1, 2, {\"b\": null}], \"c\": \"d\"}";
            try (PreparedStatement ps = conn.prepareStatement(
                    "INSERT INTO jdbc_types VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                ps.setLong(1, 1);
                ps.setBoolean(2, true);
                ps.setShort(3, (short) -32768);
                ps.setInt(4, 2147483647);
                ps.setLong(5, Long.MIN_VALUE);
                ps.setFloat(6, 0.5f);
                ps.setDouble(7, Math.PI);
                ps.setBigDecimal(8, new BigDecimal("-12345678.1234"));
                ps.setString(9, text);
                ps.setBytes(10, bytes);
                ps.setObject(11, date);
                ps.setObject(12, time);
                ps.setObject(13, timestamp);
                ps.setObject(14, timestamptz);
                // PGInterval makes pgjdbc look the type up in pg_catalog, which StreamHouse does
                // not serve yet; the text form binds without a lookup.
                ps.setObject(15, "3 days 04:00:00.000005", Types.OTHER);
                ps.setString(16, json);
                ps.setArray(17, conn.createArrayOf("int4", new Integer[] {1, null, -3}));
                ps.setArray(18, conn.createArrayOf("text", new String[] {"x", "with space", "quote\"d", null}));
                same(1, ps.executeUpdate(), "rows inserted");
                ps.setLong(1, 2);
                for (int i = 2; i <= 18; i++) ps.setNull(i, Types.NULL);
                same(1, ps.executeUpdate(), "rows inserted");
            }
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id, b, i2, i4, i8, f4, f8, n, t, by, d, tm, ts, tz, iv, j, ai, at FROM jdbc_types WHERE id >= ? ORDER BY id")) {
                ps.setLong(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "first row");
                    same(1L, rs.getLong(1), "id");
                    same(true, rs.getBoolean(2), "boolean");
                    same((short) -32768, rs.getShort(3), "smallint");
                    same(2147483647, rs.getInt(4), "integer");
                    same(Long.MIN_VALUE, rs.getLong(5), "bigint");
                    same(0.5f, rs.getFloat(6), "real");
                    same(Math.PI, rs.getDouble(7), "double");
                    same(new BigDecimal("-12345678.1234"), rs.getBigDecimal(8), "numeric");
                    same(text, rs.getString(9), "text");
                    check(Arrays.equals(bytes, rs.getBytes(10)), "bytea");
                    same(date, rs.getObject(11, LocalDate.class), "date");
                    same(time, rs.getObject(12, LocalTime.class), "time");
                    same(timestamp, rs.getObject(13, LocalDateTime.class), "timestamp");
                    same(timestamptz, rs.getObject(14, OffsetDateTime.class), "timestamptz");
                    same("3 days 04:00:00.000005", rs.getString(15), "interval");
                    same(json, rs.getString(16), "jsonb");
                    check(Arrays.equals(new Integer[] {1, null, -3}, (Object[]) rs.getArray(17).getArray()), "int[]");
                    check(Arrays.equals(new String[] {"x", "with space", "quote\"d", null}, (Object[]) rs.getArray(18).getArray()), "text[]");
                    check(rs.next(), "second row");
                    same(2L, rs.getLong(1), "id");
                    for (int i = 2; i <= 18; i++) {
                        rs.getObject(i);
                        check(rs.wasNull(), "column " + i + " is NULL");
                    }
                    check(!rs.next(), "two rows");
                }
            }
            // Batches of prepared inserts.
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TOPIC jdbc_batch (id INT, name TEXT)");
            }
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_batch VALUES (?, ?)")) {
                for (int i = 0; i < 100; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "n" + i);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                same(100, counts.length, "batch size");
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*), sum(id) FROM jdbc_batch")) {
                check(rs.next(), "aggregate row");
                same(100L, rs.getLong(1), "count");
                same(4950L, rs.getLong(2), "sum");
            }
            // A keyed table: UPDATE and DELETE through prepared statements report their counts.
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jdbc_people (id BIGINT PRIMARY KEY, name TEXT, score INT)");
                same(5, st.executeUpdate("INSERT INTO jdbc_people VALUES (0, 'a', 0), (1, 'b', 10), (2, 'c', 20), (3, 'd', 30), (4, 'e', 40)"), "inserted");
            }
            try (PreparedStatement ps = conn.prepareStatement("UPDATE jdbc_people SET score = score + ?, name = ? WHERE id = ?")) {
                ps.setInt(1, 5);
                ps.setString(2, "renamed");
                ps.setLong(3, 2L);
                same(1, ps.executeUpdate(), "rows updated");
            }
            try (PreparedStatement ps = conn.prepareStatement("DELETE FROM jdbc_people WHERE score < ?")) {
                ps.setInt(1, 15);
                same(2, ps.executeUpdate(), "rows deleted");
            }
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_people VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING")) {
                ps.setLong(1, 3L);
                ps.setString(2, "kept out");
                ps.setInt(3, 0);
                same(0, ps.executeUpdate(), "existing key skipped");
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT string_agg(id || ':' || name || ':' || score, ',' ORDER BY id) FROM jdbc_people")) {
                check(rs.next(), "keyed rows");
                same("2:renamed:25,3:d:30,4:e:40", rs.getString(1), "keyed table after changes");
            }
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_topic");
                throw new AssertionError("missing topic did not fail");
            } catch (SQLException e) {
                same("42P01", e.getSQLState(), "sqlstate");
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT version()")) {
                check(rs.next() && rs.getString(1).contains("StreamHouse"), "version()");
            }
        }
        System.out.println("pgjdbc: ok");
    }
}
