// Logs in with node-postgres (its own SCRAM-SHA-256) and prints who it is, or the SQLSTATE.
const { Client } = require('pg');

const [port, user, password] = process.argv.slice(2);

(async () => {
  const client = new Client({ host: '127.0.0.1', port: Number(port), user, password, database: 'streamhouse' });
  try {
    await client.connect();
  } catch (error) {
    console.log('error', error.code, error.message);
    return;
  }
  const result = await client.query({ text: 'SELECT current_user, session_user', rowMode: 'array' });
  console.log('ok', result.rows[0][0], result.rows[0][1]);
  await client.end();
})();
