// The alarm-center demo: one http server, the ws transport on /alarms/:channel, a page at /, a simulated alarm
// feed, and POST /alarms/:channel to publish one by hand. `server.js` is the command line entry; tests call
// `start()` in-process on port 0.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { SessionRegistry, HttpError, memoryHistory } from 'fanout';
import { redisHistory } from 'fanout/brokers/redis-history';
import { wsTransport } from 'fanout/transports/ws';
import { bindPrometheus } from 'fanout/metrics/prometheus';

/** @typedef {'info' | 'warning' | 'critical'} Level */
/**
 * What every session of a channel receives, as JSON text.
 * @typedef {{ id: string, channel: string, level: Level, text: string, time: string, source: 'simulated' | 'post' }} Alarm
 */

/** Channels the page offers in its select; any name matching CHANNEL_NAME works too. */
export const CHANNELS = Object.freeze(['track-people', 'perimeter', 'fire']);
export const DEFAULT_CHANNEL = 'track-people';
/** Largest POST body in bytes; a larger one gets 413. */
export const BODY_LIMIT = 64 * 1024;
/** Longest alarm text in characters. */
export const TEXT_LIMIT = 500;

const CHANNEL_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const LEVELS = /** @type {readonly Level[]} */ (['info', 'warning', 'critical']);
const ALARM_PATH = /^\/alarms\/([^/]+)$/;
const PAGE_URL = new URL('./index.html', import.meta.url);
// The page imports fanout/client as it is built (one ESM file, no imports of its own).
const CLIENT_FILE = fileURLToPath(import.meta.resolve('fanout/client'));
/** Alarms kept per channel for clients that reconnect, and for how long. */
export const HISTORY = Object.freeze({ size: 1000, ttl: 10 * 60_000 });

/** The simulated feed: what a building's sensors might report. */
const SIMULATED = Object.freeze({
  'track-people': [
    'person detected in zone 3',
    'tailgating at gate B',
    'loitering near loading dock',
    'zone 1 clear',
  ],
  perimeter: ['fence vibration, sector 7', 'gate A left open', 'motion at north wall', 'camera 12 tamper'],
  fire: [
    'smoke detector 4F-12',
    'sprinkler pressure low',
    'heat rise in server room',
    'fire door 2 held open',
  ],
});

/**
 * Starts the demo and resolves once it listens.
 * @param {{ port?: number, host?: string, interval?: number, log?: (line: string) => void }} [options]
 *   `port` 0 picks a free port (default 8080); `host` default 127.0.0.1; `interval` between simulated alarms in
 *   ms, 0 turns them off (default 1000); `log` receives one line per notable event (default: none).
 */
export async function start(options = {}) {
  const {
    port = 8080,
    host = '127.0.0.1',
    interval = 1000,
    log = () => {},
    redis,
    prefix = 'alarm-center:',
  } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`The "port" option must be an integer between 0 and 65535; got ${String(port)}`);
  }
  if (typeof host !== 'string' || host.length === 0)
    throw new TypeError('The "host" option must be a non-empty string');
  if (!Number.isInteger(interval) || interval < 0 || interval > 3_600_000) {
    throw new RangeError(
      `The "interval" option must be an integer between 0 and 3600000 ms; got ${String(interval)}`,
    );
  }
  const page = await readFile(PAGE_URL);
  const clientScript = await readFile(CLIENT_FILE);

  // Every alarm channel is a stream: positions, history, and recovery for pages that reconnect. In Redis the
  // history survives a restart of this server (pages resume exactly); in memory it does not (pages are told
  // to resynchronize).
  const history =
    redis === undefined
      ? memoryHistory(HISTORY)
      : redisHistory({ client: redis, prefix, size: HISTORY.size, ttl: HISTORY.ttl });
  const registry = new SessionRegistry({ streams: { channels: (c) => CHANNEL_NAME.test(c), history } });
  registry.on('open', (session) => log(`open ${session.id} ${[...session.channels].join(',')}`));
  registry.on('close', (session, code) => log(`close ${session.id} ${code}`));
  registry.on('error', (error) => console.error('alarm-center:', error));
  // Its own prom-client Registry (not the global one), so that several demos can run in one process.
  const metrics = new Registry();
  bindPrometheus(registry, { register: metrics });

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      // Nothing a client sends reaches here; this is a bug in the demo, reported and answered with 500.
      console.error('alarm-center: request failed:', err);
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  const transport = wsTransport(registry, {
    server,
    path: '/alarms/:channel',
    authenticate: (request) => {
      const channel = request.params['channel'] ?? '';
      if (!CHANNEL_NAME.test(channel)) throw new HttpError(400, 'Bad channel name');
      return { channels: [channel] };
    },
  });

  let seq = 0;
  /** @param {string} channel */
  const simulate = (channel) => {
    const texts = SIMULATED[/** @type {keyof typeof SIMULATED} */ (channel)] ?? ['sensor heartbeat missed'];
    const n = seq++;
    const level = LEVELS[n % 7 === 0 ? 2 : n % 3 === 0 ? 1 : 0] ?? 'info';
    return alarm(channel, level, texts[n % texts.length] ?? 'alarm', 'simulated');
  };
  // One simulated alarm per tick on every channel that has a session now (bounded by the open channels).
  const timer =
    interval > 0
      ? setInterval(() => {
          if (registry.closing) return;
          for (const channel of registry.channels()) registry.publish(channel, simulate(channel));
        }, interval)
      : null;
  // The server keeps the process alive; the timer alone must not.
  timer?.unref();

  /**
   * @param {http.IncomingMessage} req
   * @param {http.ServerResponse} res
   */
  async function handle(req, res) {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    if (path === '/' || path === '/index.html') {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': page.byteLength,
        'cache-control': 'no-store',
      });
      return void res.end(method === 'HEAD' ? undefined : page);
    }
    if (path === '/client.js') {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      res.writeHead(200, {
        'content-type': 'text/javascript; charset=utf-8',
        'content-length': clientScript.byteLength,
        'cache-control': 'no-store',
      });
      return void res.end(method === 'HEAD' ? undefined : clientScript);
    }
    if (path === '/stats') {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      return reply(res, 200, { ...registry.stats(), channelNames: registry.channels() });
    }
    if (path === '/metrics') {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      const text = await metrics.metrics();
      res.writeHead(200, {
        'content-type': metrics.contentType,
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
      });
      return void res.end(method === 'HEAD' ? undefined : text);
    }
    const match = ALARM_PATH.exec(path);
    if (match === null) return reply(res, 404, { error: `Not found: ${path}` });
    if (method !== 'POST') {
      return methodNotAllowed(res, 'POST', 'POST an alarm here, or open a WebSocket to this path');
    }
    let channel;
    try {
      channel = decodeURIComponent(match[1] ?? '');
    } catch {
      channel = '';
    }
    if (!CHANNEL_NAME.test(channel)) {
      return reply(res, 400, { error: 'The channel name must be 1 to 64 letters, digits, "-" or "_"' });
    }
    const body = await readBody(req, BODY_LIMIT);
    if (body === 'aborted') return void res.destroy();
    if (body === 'too-large') {
      res.setHeader('connection', 'close');
      return reply(res, 413, { error: `The body must be at most ${BODY_LIMIT} bytes` });
    }
    let input;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch (err) {
      return reply(res, 400, { error: `The body must be JSON: ${/** @type {Error} */ (err).message}` });
    }
    const problem = validate(input);
    if (problem !== null) return reply(res, 400, { error: problem });
    if (registry.closing) return reply(res, 503, { error: 'The server is shutting down' });
    const published = alarm(channel, input.level ?? 'info', input.text, 'post');
    const sessions = registry.count(channel);
    registry.publish(channel, published);
    log(`POST ${channel} to ${sessions} session(s): ${published.text}`);
    return reply(res, 202, { alarm: published, sessions });
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(undefined);
    });
  });
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/`;

  /** @type {Promise<void> | null} */
  let closing = null;
  return {
    url,
    port: address.port,
    host: address.address,
    server,
    registry,
    transport,
    history: redis === undefined ? 'memory' : 'redis',
    metrics,
    /**
     * Stops the feed, closes every session with 1001 (the page reconnects to whatever comes next), then the
     * http server. Idempotent.
     * @returns {Promise<void>}
     */
    close() {
      return (closing ??= (async () => {
        if (timer !== null) clearInterval(timer);
        await registry.close(1001, 'server shutting down');
        await new Promise((resolve) => {
          server.close(() => resolve(undefined));
          // Idle keep-alive connections would hold server.close() open.
          server.closeAllConnections();
        });
      })());
    },
  };
}

/**
 * @param {string} channel
 * @param {Level} level
 * @param {string} text
 * @param {Alarm['source']} source
 * @returns {Alarm}
 */
function alarm(channel, level, text, source) {
  return { id: randomUUID(), channel, level, text, time: new Date().toISOString(), source };
}

/**
 * @param {unknown} input
 * @returns {string | null} what is wrong with a POSTed alarm, or null
 */
function validate(input) {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return 'The body must be a JSON object such as {"level":"critical","text":"zone 3"}';
  }
  const { text, level } = /** @type {Record<string, unknown>} */ (input);
  if (typeof text !== 'string' || text.trim().length === 0)
    return 'The "text" field must be a non-empty string';
  if (text.length > TEXT_LIMIT) return `The "text" field must be at most ${TEXT_LIMIT} characters`;
  if (level !== undefined && !LEVELS.includes(/** @type {Level} */ (level))) {
    return `The "level" field must be one of ${LEVELS.join(', ')}`;
  }
  return null;
}

/**
 * Reads a request body up to `limit` bytes. Resolves `'too-large'` as soon as it is larger (the rest is not
 * read) and `'aborted'` when the client goes away first; never rejects.
 * @param {http.IncomingMessage} req
 * @param {number} limit
 * @returns {Promise<Buffer | 'too-large' | 'aborted'>}
 */
function readBody(req, limit) {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve('too-large');
  return new Promise((resolve) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    /** @param {Buffer | 'too-large' | 'aborted'} result */
    const finish = (result) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
      resolve(result);
    };
    const onData = (/** @type {Buffer} */ chunk) => {
      size += chunk.byteLength;
      if (size > limit) {
        req.pause();
        finish('too-large');
      } else chunks.push(chunk);
    };
    const onEnd = () => finish(Buffer.concat(chunks));
    const onGone = () => finish('aborted');
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onGone);
  });
}

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 */
function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/**
 * @param {http.ServerResponse} res
 * @param {string} allow
 * @param {string} [hint]
 */
function methodNotAllowed(res, allow, hint) {
  res.setHeader('allow', allow);
  reply(res, 405, { error: `Method not allowed; use ${allow}${hint === undefined ? '' : ` (${hint})`}` });
}
