// `npm start`: runs the alarm-center demo until SIGINT/SIGTERM. PORT (default 8080, 0 = any free port) and
// HOST (default 127.0.0.1) come from the environment.
import { start } from './app.js';

const port =
  process.env['PORT'] === undefined || process.env['PORT'] === '' ? 8080 : Number(process.env['PORT']);
const host = process.env['HOST'] || '127.0.0.1';
const verbose = process.env['VERBOSE'] === '1';

let demo;
/** @type {import('ioredis').Redis | undefined} */
let redis;
try {
  // REDIS_URL (e.g. redis://127.0.0.1:6379) keeps the alarm history in Redis: pages resume exactly across a
  // restart of this server. Without it the history is in memory.
  if (process.env['REDIS_URL']) {
    const { Redis } = await import('ioredis');
    redis = new Redis(process.env['REDIS_URL']);
    redis.on('error', (err) => console.error('alarm-center: redis:', err.message));
  }
  demo = await start({ port, host, redis, log: verbose ? (line) => console.log(line) : undefined });
} catch (err) {
  console.error(`alarm-center: cannot start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}

console.log(`alarm-center listening on ${demo.url} (alarm history in ${demo.history})`);
console.log(`  page:    ${demo.url}`);
console.log(`  socket:  ${demo.url.replace('http', 'ws')}alarms/track-people`);
console.log(`  publish: curl -X POST -H 'content-type: application/json' \\`);
console.log(`             -d '{"level":"critical","text":"zone 3"}' ${demo.url}alarms/track-people`);
console.log(`  stats:   ${demo.url}stats`);
console.log(`  metrics: ${demo.url}metrics`);

let stopping = false;
/** @param {NodeJS.Signals} signal */
function shutdown(signal) {
  if (stopping) {
    console.error(`alarm-center: ${signal} again, exiting now`);
    process.exit(1);
  }
  stopping = true;
  console.log(`alarm-center: ${signal}, closing sessions`);
  demo.close().then(
    () => {
      console.log('alarm-center: closed');
      redis?.disconnect();
      process.exit(0);
    },
    (err) => {
      console.error('alarm-center: close failed:', err);
      process.exit(1);
    },
  );
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
