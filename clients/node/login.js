// Logs in with node-postgres (its own SCRAM-SHA-256) and prints who it is, or the SQLSTATE.
// The host is PGHOST (default 127.0.0.1); TLS follows libpq's PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
// PGSSLKEY and PGCHANNELBINDING (require: SCRAM-SHA-256-PLUS), mapped to node-postgres' options.
const fs = require('fs');
const { Client } = require('pg');

const [port, user, password] = process.argv.slice(2);
const env = process.env;

function tls() {
  const mode = env.PGSSLMODE || 'disable';
  if (mode === 'disable') return false;
  const options = { rejectUnauthorized: mode.startsWith('verify') };
  if (env.PGSSLROOTCERT) options.ca = fs.readFileSync(env.PGSSLROOTCERT);
  if (env.PGSSLCERT) options.cert = fs.readFileSync(env.PGSSLCERT);
  if (env.PGSSLKEY) options.key = fs.readFileSync(env.PGSSLKEY);
  return options;
}

(async () => {
  const client = new Client({
    host: env.PGHOST || '127.0.0.1',
    port: Number(port),
    user,
    password,
    database: 'streamhouse',
    ssl: tls(),
    enableChannelBinding: env.PGCHANNELBINDING === 'require',
  });
  try {
    await client.connect();
  } catch (error) {
    // A failed TLS handshake has no SQLSTATE: its code is node's (e.g. ECONNRESET).
    console.log('error', error.code, error.message);
    return;
  }
  const result = await client.query({ text: 'SELECT current_user, session_user', rowMode: 'array' });
  console.log('ok', result.rows[0][0], result.rows[0][1]);
  await client.end();
})();
