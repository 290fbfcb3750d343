// The alarm-center demo's HTTP and WebSocket behaviour, in-process on port 0 with a real `ws` client.
// The demo imports 'fanout', which resolves to dist/: `npm test` builds before vitest runs.
import http from 'node:http';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { BODY_LIMIT, start } from '../../examples/alarm-center/app.js';
import type { Alarm, AlarmCenter } from '../../examples/alarm-center/app.js';

const leftovers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const dispose of leftovers.splice(0).reverse()) await dispose();
});

async function demo(interval = 0): Promise<AlarmCenter> {
  const d = await start({ port: 0, interval });
  leftovers.push(() => d.close());
  return d;
}

/** Ends a client in any state; terminating one still connecting makes ws emit an error, expected here. */
function dispose(ws: WebSocket): void {
  ws.on('error', () => {});
  ws.terminate();
}

async function client(d: AlarmCenter, channel = 'track-people'): Promise<WebSocket> {
  const ws = new WebSocket(`${d.url.replace('http', 'ws')}alarms/${channel}`);
  leftovers.push(() => dispose(ws));
  await once(ws, 'open');
  return ws;
}

/** The next alarm: the body of the next stream data frame (control frames such as `sub` are skipped). */
function nextAlarm(ws: WebSocket): Promise<Alarm> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer, isBinary: boolean) => {
      if (isBinary) return reject(new Error('expected a text frame'));
      const text = String(data);
      const nl = text.indexOf('\n');
      if (!text.startsWith('\u001e[1,"m",') || nl === -1) return; // a control frame
      ws.off('message', onMessage);
      resolve(JSON.parse(text.slice(nl + 1)) as Alarm);
    };
    ws.on('message', onMessage);
    ws.once('close', (code) => reject(new Error(`closed with ${code} before a message`)));
  });
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request with node:http; `chunks` are written one by one (no content-length: chunked). */
function request(
  d: AlarmCenter,
  method: string,
  path: string,
  body?: string | Buffer,
  chunks?: Buffer[],
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(new URL(path, d.url), { method, agent: false }, (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    // After a 413 the server closes while the rest of the body may still be on its way: the reply still counts.
    req.on('error', (err) => (answered ? undefined : reject(err)));
    if (body !== undefined) {
      req.setHeader('content-type', 'application/json');
      req.end(body);
    } else if (chunks !== undefined) {
      for (const c of chunks) req.write(c);
      req.end();
    } else req.end();
  });
}

describe('alarm-center demo', () => {
  it('delivers an alarm POSTed to /alarms/track-people to a ws client of that channel only', async () => {
    const d = await demo();
    const people = await client(d, 'track-people');
    const fire = await client(d, 'fire');
    const fireMessages: unknown[] = [];
    // Data frames only: the stream's control frame (`sub`, the position on joining) is not an alarm.
    fire.on('message', (m) => {
      if (String(m).startsWith('\u001e[1,"m",')) fireMessages.push(m);
    });
    const received = nextAlarm(people);
    const res = await request(
      d,
      'POST',
      '/alarms/track-people',
      JSON.stringify({ level: 'critical', text: 'zone 3' }),
    );
    expect(res.status).toBe(202);
    const body = JSON.parse(res.body) as { alarm: Alarm; sessions: number };
    expect(body.sessions).toBe(1);
    expect(body.alarm).toMatchObject({
      channel: 'track-people',
      level: 'critical',
      text: 'zone 3',
      source: 'post',
    });
    expect(await received).toEqual(body.alarm);
    expect(new Date(body.alarm.time).toISOString()).toBe(body.alarm.time);

    // A marker on the fire channel, published after: once it arrives, a leaked track-people alarm would have too.
    const marker = nextAlarm(fire);
    expect((await request(d, 'POST', '/alarms/fire', JSON.stringify({ text: 'marker' }))).status).toBe(202);
    expect(await marker).toMatchObject({ channel: 'fire', level: 'info', text: 'marker' });
    expect(fireMessages).toHaveLength(1);
  });

  it('publishes simulated alarms to every channel that has a session', async () => {
    const d = await demo(20);
    const people = await client(d, 'track-people');
    const perimeter = await client(d, 'perimeter');
    const [a, b] = await Promise.all([nextAlarm(people), nextAlarm(perimeter)]);
    expect(a).toMatchObject({ channel: 'track-people', source: 'simulated' });
    expect(b).toMatchObject({ channel: 'perimeter', source: 'simulated' });
    expect(['info', 'warning', 'critical']).toContain(a.level);
  });

  it('answers a body that is not JSON, or not an alarm, with 400 and a message', async () => {
    const d = await demo();
    const bad = await request(d, 'POST', '/alarms/track-people', '{"level": critical');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatch(/^The body must be JSON/);
    for (const [body, message] of [
      ['[1]', /JSON object/],
      ['{"level":"critical"}', /"text"/],
      ['{"text":""}', /"text"/],
      ['{"text":"x","level":"panic"}', /"level"/],
      [JSON.stringify({ text: 'x'.repeat(501) }), /at most 500/],
    ] as const) {
      const res = await request(d, 'POST', '/alarms/track-people', body);
      expect(res.status, body).toBe(400);
      expect(JSON.parse(res.body).error).toMatch(message);
    }
    const name = await request(d, 'POST', '/alarms/a%20b', '{"text":"x"}');
    expect(name.status).toBe(400);
    expect(d.registry.stats().published).toBe(0);
  });

  it(`answers a body over ${BODY_LIMIT} bytes with 413, declared or streamed`, async () => {
    const d = await demo();
    const declared = await request(d, 'POST', '/alarms/track-people', Buffer.alloc(BODY_LIMIT + 1, 0x20));
    expect(declared.status).toBe(413);
    const streamed = await request(d, 'POST', '/alarms/track-people', undefined, [
      Buffer.alloc(BODY_LIMIT / 2, 0x20),
      Buffer.alloc(BODY_LIMIT / 2, 0x20),
      Buffer.from('{"text":"x"}'),
    ]);
    expect(streamed.status).toBe(413);
    expect(JSON.parse(streamed.body).error).toMatch(/at most 65536 bytes/);
    // Exactly at the limit is fine.
    const padded = `{"text":"x"}${' '.repeat(BODY_LIMIT - 12)}`;
    expect((await request(d, 'POST', '/alarms/track-people', padded)).status).toBe(202);
  });

  it('answers unknown paths with 404 and wrong methods with 405 and Allow', async () => {
    const d = await demo();
    expect((await request(d, 'GET', '/nope')).status).toBe(404);
    expect((await request(d, 'POST', '/alarms')).status).toBe(404);
    expect((await request(d, 'POST', '/alarms/a/b', '{}')).status).toBe(404);
    const get = await request(d, 'GET', '/alarms/track-people');
    expect(get.status).toBe(405);
    expect(get.headers['allow']).toBe('POST');
    const put = await request(d, 'PUT', '/alarms/track-people', '{"text":"x"}');
    expect(put.status).toBe(405);
    const postPage = await request(d, 'POST', '/', '{}');
    expect(postPage.status).toBe(405);
    expect(postPage.headers['allow']).toBe('GET, HEAD');
    expect((await request(d, 'DELETE', '/stats')).status).toBe(405);
  });

  it('serves the page at / and refuses WebSocket upgrades on unknown paths or bad channel names', async () => {
    const d = await demo();
    const page = await request(d, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain("import { FanoutClient } from '/client.js'");
    expect(page.body).not.toMatch(/<script[^>]+src=|<link[^>]+href="http/);
    // fanout/client, served from the same origin as built: one module with no imports of its own.
    const script = await request(d, 'GET', '/client.js');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.body).toContain('class FanoutClient');
    expect(script.body).not.toMatch(/^\s*import\s/m);
    for (const [path, status] of [
      ['/elsewhere', 404],
      ['/alarms/a%20b', 400],
    ] as const) {
      const ws = new WebSocket(`${d.url.replace('http', 'ws')}${path.slice(1)}`);
      leftovers.push(() => dispose(ws));
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, http.IncomingMessage];
      expect(res.statusCode, path).toBe(status);
      res.resume();
    }
    expect(d.registry.count()).toBe(0);
  });

  it('serves registry.stats() as JSON at /stats', async () => {
    const d = await demo();
    await client(d, 'track-people');
    await client(d, 'fire');
    const res = await request(d, 'GET', '/stats');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    const stats = JSON.parse(res.body);
    expect(stats).toMatchObject({ sessions: 2, channels: 2, opened: 2, published: 0, dropped: 0 });
    expect([...stats.channelNames].sort()).toEqual(['fire', 'track-people']);
  });

  it('serves Prometheus metrics at /metrics that match what the clients did', async () => {
    const d = await demo();
    // Every frame and byte each client receives, from the first one (a stream's `sub` control frame on open).
    let bytes = 0;
    let frames = 0;
    let alarms = 0;
    let wake: (() => void) | null = null;
    const counted = async (channel: string): Promise<WebSocket> => {
      const ws = new WebSocket(`${d.url.replace('http', 'ws')}alarms/${channel}`);
      leftovers.push(() => dispose(ws));
      ws.on('message', (data: Buffer) => {
        bytes += data.length;
        frames++;
        if (String(data).startsWith('\u001e[1,"m",')) alarms++;
        wake?.();
      });
      await once(ws, 'open');
      return ws;
    };
    const until = (done: () => boolean) =>
      new Promise<void>((resolve) => {
        wake = () => {
          if (done()) resolve();
        };
        wake();
      });
    await counted('track-people');
    const b = await counted('track-people');
    await counted('fire');
    await until(() => frames === 3);
    // Refused before the 101: a bad channel name (400).
    const refused = new WebSocket(`${d.url.replace('http', 'ws')}alarms/bad%20name`);
    refused.on('error', () => {});
    const [, res400] = (await once(refused, 'unexpected-response')) as [unknown, http.IncomingMessage];
    expect(res400.statusCode).toBe(400);
    res400.resume();

    // Four publishes: three to two sessions, one to one.
    for (const text of ['one', 'two', 'three']) {
      const r = await request(d, 'POST', '/alarms/track-people', JSON.stringify({ text }));
      expect(r.status).toBe(202);
    }
    expect((await request(d, 'POST', '/alarms/fire', JSON.stringify({ text: 'four' }))).status).toBe(202);
    await until(() => alarms === 7);

    // One client leaves with an application close code.
    const gone = new Promise<void>((resolve) => d.registry.once('close', () => resolve()));
    b.close(4001, 'bye');
    await gone;

    const res = await request(d, 'GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = parseMetrics(res.body);
    expect(m.get('fanout_sessions{transport="ws"}')).toBe(2);
    expect(m.get('fanout_channels')).toBe(2);
    expect(m.get('fanout_sessions_opened_total')).toBe(3);
    expect(m.get('fanout_published_total')).toBe(4);
    // Seven alarms and one control frame per session, every byte of them.
    expect(frames).toBe(10);
    expect(m.get('fanout_delivered_total')).toBe(frames);
    expect(m.get('fanout_delivered_bytes_total')).toBe(bytes);
    for (const reason of ['backpressure', 'closed', 'error'])
      expect(m.get(`fanout_dropped_total{reason="${reason}"}`)).toBe(0);
    expect(m.get('fanout_rejected_total{status="400"}')).toBe(1);
    expect(m.get('fanout_closes_total{code="4xxx"}')).toBe(1);
    expect(m.get('fanout_publish_duration_seconds_count')).toBe(4);
    expect(m.get('fanout_publish_duration_seconds_bucket{le="+Inf"}')).toBe(4);
    expect(m.get('fanout_skipped_total')).toBe(0);
    expect(m.get('fanout_conflated_total')).toBe(0);
    expect(m.get('fanout_broker_published_total')).toBe(0);
    expect(d.registry.stats()).toMatchObject({ delivered: 10, published: 4, rejected: 1 });
    expect((await request(d, 'POST', '/metrics')).status).toBe(405);
  });

  it('close() closes sessions with 1001 and the server, and is idempotent', async () => {
    const d = await start({ port: 0, interval: 10 });
    const ws = await client(d);
    const closed = once(ws, 'close');
    await Promise.all([d.close(), d.close()]);
    const [code] = (await closed) as [number];
    expect(code).toBe(1001);
    expect(d.server.listening).toBe(false);
    expect(d.registry.count()).toBe(0);
  });

  it('rejects bad start options naming the option', async () => {
    await expect(start({ port: 70000 })).rejects.toThrow(RangeError);
    await expect(start({ port: -1 })).rejects.toThrow(/"port"/);
    await expect(start({ port: 0, interval: 1.5 })).rejects.toThrow(/"interval"/);
    await expect(start({ port: 0, host: '' })).rejects.toThrow(/"host"/);
  });
});

/** The Prometheus text format as `name{labels}` -> value (comments skipped). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
