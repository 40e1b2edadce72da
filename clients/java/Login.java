// Logs in with pgjdbc (its own SCRAM-SHA-256) and prints who it is, or the SQLSTATE.
// The host is PGHOST (default 127.0.0.1); PGSSLMODE and PGSSLROOTCERT become pgjdbc's sslmode and
// sslrootcert (a PEM certificate), PGSSLCERT and PGSSLKEY its sslcert and sslkey.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class Login {
    public static void main(String[] args) throws Exception {
        String host = System.getenv().getOrDefault("PGHOST", "127.0.0.1");
        String url = "jdbc:postgresql://" + host + ":" + args[0] + "/streamhouse";
        String mode = System.getenv("PGSSLMODE");
        if (mode != null) {
            url += "?sslmode=" + mode;
            String root = System.getenv("PGSSLROOTCERT");
            if (root != null) url += "&sslrootcert=" + root;
            // A client certificate (PEM) and its key (PKCS#8 DER: what pgjdbc reads).
            String cert = System.getenv("PGSSLCERT");
            String key = System.getenv("PGSSLKEY");
            if (cert != null && key != null) url += "&sslcert=" + cert + "&sslkey=" + key;
        }
        try (Connection conn = DriverManager.getConnection(url, args[1], args[2]);
             Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT current_user, session_user")) {
            rs.next();
            System.out.println("ok " + rs.getString(1) + " " + rs.getString(2));
        } catch (SQLException error) {
            System.out.println("error " + error.getSQLState() + " " + error.getMessage());
        }
    }
}
