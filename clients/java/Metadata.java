// What pgjdbc's DatabaseMetaData tells of a database (getTables, getColumns, getPrimaryKeys,
// getTypeInfo for the types StreamHouse has), and setDate/setTimestamp/setBigDecimal
// parameters read back. Prints one line per row; tests/tools.rs runs it against StreamHouse and
// against PostgreSQL with the same objects and compares the output.
// Run: java -cp /usr/share/java/postgresql.jar Metadata.java PORT

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class Metadata {
    static void print(String title, ResultSet rs, String... columns) throws SQLException {
        System.out.println("## " + title);
        while (rs.next()) {
            StringBuilder line = new StringBuilder();
            for (String column : columns) {
                if (line.length() > 0) line.append(" | ");
                line.append(column).append('=').append(rs.getString(column));
            }
            System.out.println(line);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/streamhouse";
        try (Connection conn = DriverManager.getConnection(url, "streamhouse", "")) {
            DatabaseMetaData meta = conn.getMetaData();
            print("getTables", meta.getTables(null, "public", "%", null),
                "TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE", "REMARKS");
            print("getTables TABLE", meta.getTables(null, null, "%", new String[] {"TABLE"}), "TABLE_NAME", "TABLE_TYPE");
            print("getTables MATERIALIZED VIEW", meta.getTables(null, null, "per%", new String[] {"MATERIALIZED VIEW"}),
                "TABLE_NAME", "TABLE_TYPE");
            print("getColumns", meta.getColumns(null, "public", "%", "%"),
                "TABLE_NAME", "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "COLUMN_SIZE", "DECIMAL_DIGITS",
                "NUM_PREC_RADIX", "NULLABLE", "REMARKS", "COLUMN_DEF", "ORDINAL_POSITION", "IS_NULLABLE",
                "IS_AUTOINCREMENT", "IS_GENERATEDCOLUMN");
            print("getPrimaryKeys", meta.getPrimaryKeys(null, "public", "people"),
                "TABLE_NAME", "COLUMN_NAME", "KEY_SEQ", "PK_NAME");
            print("getPrimaryKeys of a topic", meta.getPrimaryKeys(null, "public", "bids"), "TABLE_NAME", "COLUMN_NAME");
            print("getIndexInfo", meta.getIndexInfo(null, "public", "people", false, false),
                "TABLE_NAME", "NON_UNIQUE", "INDEX_NAME", "TYPE", "ORDINAL_POSITION", "COLUMN_NAME", "ASC_OR_DESC");
            print("getSchemas", meta.getSchemas(null, "public"), "TABLE_SCHEM");
            print("getTableTypes (those in use)", conn.createStatement().executeQuery("SELECT 1 AS x WHERE false"), "x");

            Set<String> ours = new HashSet<>(Arrays.asList("bool", "bytea", "int8", "int2", "int4", "text", "float4",
                "float8", "varchar", "date", "time", "timestamp", "timestamptz", "interval", "numeric", "jsonb", "json"));
            System.out.println("## getTypeInfo");
            try (ResultSet rs = meta.getTypeInfo()) {
                List<String> lines = new ArrayList<>();
                while (rs.next()) {
                    if (ours.contains(rs.getString("TYPE_NAME"))) {
                        lines.add(rs.getString("TYPE_NAME") + " | DATA_TYPE=" + rs.getInt("DATA_TYPE") + " | PRECISION="
                            + rs.getInt("PRECISION") + " | NULLABLE=" + rs.getInt("NULLABLE") + " | SEARCHABLE=" + rs.getInt("SEARCHABLE"));
                    }
                }
                Collections.sort(lines);
                lines.forEach(System.out::println);
            }

            System.out.println("## parameters");
            try (PreparedStatement ps = conn.prepareStatement("SELECT ?::date AS d, ?::timestamp AS ts, ?::numeric AS n, ? AS s")) {
                ps.setDate(1, java.sql.Date.valueOf("2024-01-01"));
                ps.setTimestamp(2, java.sql.Timestamp.valueOf("2024-02-03 04:05:06.789"));
                ps.setBigDecimal(3, new BigDecimal("-12345678901234567890.0123456789"));
                ps.setString(4, "it's");
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println(rs.getDate("d") + " | " + rs.getTimestamp("ts") + " | " + rs.getBigDecimal("n") + " | " + rs.getString("s"));
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT count(*) AS n FROM bids WHERE date_time >= ? AND price < ?")) {
                ps.setTimestamp(1, java.sql.Timestamp.valueOf("2024-01-01 10:00:05"));
                ps.setBigDecimal(2, new BigDecimal("100"));
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("bids since 10:00:05 under 100: " + rs.getLong("n"));
                }
            }
        }
    }
}
