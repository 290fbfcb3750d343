// End-to-end test of the alarm-center demo in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): the page's own WebSocket, the POST endpoint, the simulated feed, reconnect after 1013.
// Run with `npm run test:e2e` (builds first). Prints `N passed, N failed` last; exits non-zero on failure.
/* global AbortSignal, MutationObserver */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { chromium } from 'playwright-core';
import { start } from '../../examples/alarm-center/app.js';

const EXECUTABLE = process.env['CHROMIUM_PATH'] || '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps trying hosts this machine's closed network refuses.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const OVERALL_TIMEOUT = 120_000;
const STEP_TIMEOUT = 15_000;

let passed = 0;
let failed = 0;

// The whole run is bounded: a hang anywhere ends it as a failure.
const watchdog = setTimeout(() => {
  console.error(`not ok - the run did not finish within ${OVERALL_TIMEOUT / 1000} s`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, OVERALL_TIMEOUT);
watchdog.unref();

/**
 * Runs one named check; a failure is reported and counted, and the next check still runs.
 * @param {string} name
 * @param {() => Promise<void>} fn
 */
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`not ok - ${name}`);
    console.log(
      `  ${String(err instanceof Error ? (err.stack ?? err.message) : err).replaceAll('\n', '\n  ')}`,
    );
  }
}

/**
 * POSTs one alarm to the demo and returns the parsed response.
 * @param {string} base
 * @param {string} channel
 * @param {unknown} body
 */
async function post(base, channel, body) {
  const res = await fetch(`${base}alarms/${channel}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_TIMEOUT),
  });
  return { status: res.status, body: await res.json() };
}

/**
 * Waits until the page lists an alarm with exactly `text`; returns what the row shows.
 * @param {import('playwright-core').Page} page
 * @param {string} text
 */
async function waitForAlarm(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#alarms li .text')].some((el) => el.textContent === t),
    text,
    { timeout: STEP_TIMEOUT },
  );
  return page.evaluate((t) => {
    const li = [...document.querySelectorAll('#alarms li')].find(
      (el) => el.querySelector('.text')?.textContent === t,
    );
    return {
      className: li?.className ?? '',
      level: li?.querySelector('.level')?.textContent ?? '',
      time: li?.querySelector('time')?.getAttribute('datetime') ?? '',
    };
  }, text);
}

/**
 * @param {import('playwright-core').Page} page
 * @param {string} state
 */
function waitForState(page, state) {
  return page.waitForFunction((s) => document.getElementById('state')?.textContent === s, state, {
    timeout: STEP_TIMEOUT,
  });
}

/** @type {Awaited<ReturnType<typeof start>> | undefined} */
let demo;
/** @type {import('playwright-core').BrowserContext | undefined} */
let context;
/** @type {string | undefined} */
let profile;
/** @type {string[]} */
const pageErrors = [];

try {
  // A short interval keeps the run quick; the feed itself is the same code as `npm start`'s.
  demo = await start({ port: 0, host: '127.0.0.1', interval: 200 });
  const base = demo.url;
  const registry = demo.registry;
  console.log(`# demo on ${base}, chromium ${EXECUTABLE}`);

  profile = await mkdtemp(join(tmpdir(), 'fanout-e2e-profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: EXECUTABLE,
    headless: true,
    args: ARGS,
    timeout: 30_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => pageErrors.push(err.message));

  await check('the page loads and its WebSocket reaches "open"', async () => {
    const res = await page.goto(base, { timeout: STEP_TIMEOUT });
    assert.equal(res?.status(), 200);
    assert.equal(await page.title(), 'fanout · alarm center');
    await waitForState(page, 'open');
    assert.equal(registry.count('track-people'), 1, 'one session in the default channel');
  });

  await check('simulated alarms arrive live', async () => {
    await page.waitForFunction(
      () => document.querySelectorAll('#alarms li.simulated').length >= 3,
      undefined,
      {
        timeout: STEP_TIMEOUT,
      },
    );
    const count = await page.textContent('#count');
    assert.match(count ?? '', /^\d+ alarms$/);
  });

  await check('an alarm POSTed to /alarms/track-people appears in the page', async () => {
    const text = `e2e ${randomUUID()}`;
    const res = await post(base, 'track-people', { level: 'critical', text });
    assert.equal(res.status, 202);
    assert.equal(res.body.sessions, 1);
    const row = await waitForAlarm(page, text);
    assert.equal(row.level, 'critical');
    assert.equal(row.className, 'post');
    assert.equal(row.time, res.body.alarm.time, 'the row shows the alarm time');
  });

  await check('a second page on ?channel=fire gets only its channel', async () => {
    const fire = await context.newPage();
    fire.on('pageerror', (err) => pageErrors.push(err.message));
    try {
      await fire.goto(`${base}?channel=fire`, { timeout: STEP_TIMEOUT });
      await waitForState(fire, 'open');
      assert.equal(await fire.inputValue('#channel'), 'fire');
      const fireText = `fire ${randomUUID()}`;
      const marker = `marker ${randomUUID()}`;
      assert.equal((await post(base, 'fire', { level: 'warning', text: fireText })).status, 202);
      assert.equal((await post(base, 'track-people', { text: marker })).status, 202);
      const row = await waitForAlarm(fire, fireText);
      assert.equal(row.level, 'warning');
      // The marker was published after the fire alarm; once it is on the first page, the fire alarm would be too.
      await waitForAlarm(page, marker);
      const leaked = await page.evaluate(
        (t) => [...document.querySelectorAll('#alarms li .text')].some((el) => el.textContent === t),
        fireText,
      );
      assert.equal(leaked, false, 'the track-people page must not show a fire alarm');
    } finally {
      await fire.close();
    }
  });

  await check(
    'after the server closes the session with 1013 the page reconnects and receives again',
    async () => {
      const before = registry.stats().opened;
      // Record every state the page shows from here on: a short-lived one cannot be missed by polling.
      await page.evaluate(() => {
        const state = document.getElementById('state');
        const detail = document.getElementById('detail');
        const seen = [];
        Object.assign(window, { seenStates: seen });
        const observer = new MutationObserver(() =>
          seen.push(`${state?.textContent} ${detail?.textContent}`),
        );
        if (state !== null) observer.observe(state, { childList: true, characterData: true, subtree: true });
      });
      for (const session of registry.sessions('track-people')) session.close(1013, 'try again later');
      await page.waitForFunction(
        () => Reflect.get(window, 'seenStates').at(-1)?.startsWith('open ') === true,
        undefined,
        { timeout: STEP_TIMEOUT },
      );
      /** @type {string[]} */
      const seen = await page.evaluate(() => Reflect.get(window, 'seenStates'));
      assert.match(
        seen[0] ?? '',
        /^closed code 1013 \(try again later\), reconnecting in /,
        seen.join(' | '),
      );
      assert.ok(
        seen.some((s) => s.startsWith('connecting ')),
        seen.join(' | '),
      );
      assert.equal(registry.stats().opened, before + 1, 'one new session');
      const text = `after reconnect ${randomUUID()}`;
      assert.equal((await post(base, 'track-people', { text })).status, 202);
      await waitForAlarm(page, text);
    },
  );

  await check(
    'a WebSocket this page opens to another host name of the server is refused (403, origin check)',
    async () => {
      /** @type {Promise<[unknown, number, string]>} */
      const rejected = new Promise((resolve) =>
        registry.once('reject', (request, status, reason) => resolve([request, status, reason])),
      );
      // Same server, another name: the browser sends Origin http://127.0.0.1:<port>, Host localhost:<port>.
      const other = `ws://localhost:${new URL(base).port}/alarms/track-people`;
      const outcome = await page.evaluate(
        (url) =>
          new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => resolve('open');
            ws.onclose = (event) => resolve(`closed ${event.code}`);
          }),
        other,
      );
      assert.equal(outcome, 'closed 1006', 'the browser never got a 101');
      /** @type {NodeJS.Timeout | undefined} */
      let timer;
      const [, status] = await Promise.race([
        rejected,
        new Promise(
          (_, reject) => (timer = setTimeout(() => reject(new Error('no reject event')), STEP_TIMEOUT)),
        ),
      ]).finally(() => clearTimeout(timer));
      assert.equal(status, 403);
      assert.equal(registry.count('track-people'), 1, 'nothing registered for the refused upgrade');
    },
  );

  await check('GET /stats reports the sessions and deliveries', async () => {
    const res = await fetch(`${base}stats`, { signal: AbortSignal.timeout(STEP_TIMEOUT) });
    assert.equal(res.status, 200);
    const stats = await res.json();
    assert.equal(stats.sessions, 1);
    assert.deepEqual(stats.channelNames, ['track-people']);
    assert.ok(stats.delivered >= 5, `delivered ${stats.delivered}`);
    // Messages published to a session while the server closed it (the 1013 check) are counted as dropped
    // with reason "closed"; nothing may be dropped for backpressure or errors here.
    assert.equal(stats.droppedBy.backpressure, 0);
    assert.equal(stats.droppedBy.error, 0);
    assert.equal(stats.errors, 0);
  });

  /**
   * The alarm texts the page lists, oldest first (the list shows the newest on top).
   * @param {import('playwright-core').Page} p
   */
  const listed = (p) =>
    p.evaluate(() =>
      [...document.querySelectorAll('#alarms li:not(.note) .text')].map((el) => el.textContent).reverse(),
    );

  /**
   * Starts a demo on `port`, opens a page on it and runs `fn`; closes both after.
   * @param {(p: import('playwright-core').Page, restart: () => Promise<void>, base: () => string) => Promise<void>} fn
   * @param {import('ioredis').Redis | undefined} redis
   */
  async function restarting(redis, fn) {
    const prefix = `fanout-e2e-${randomUUID()}:`;
    let d = await start({ port: 0, host: '127.0.0.1', interval: 0, redis, prefix });
    const port = d.port;
    const p = await /** @type {import('playwright-core').BrowserContext} */ (context).newPage();
    p.on('pageerror', (err) => pageErrors.push(err.message));
    try {
      await p.goto(d.url, { timeout: STEP_TIMEOUT });
      await waitForState(p, 'open');
      await fn(
        p,
        async () => {
          await d.close(); // every session closed with 1001: the page starts reconnecting
          d = await start({ port, host: '127.0.0.1', interval: 0, redis, prefix });
        },
        () => d.url,
      );
    } finally {
      await p.close();
      await d.close();
      if (redis !== undefined) {
        const keys = await redis.keys(`${prefix}*`);
        if (keys.length > 0) await redis.del(...keys);
      }
    }
  }

  await check(
    'history in Redis: a server restart in the middle of a stream of alarms, every alarm once, in order',
    async () => {
      const redis = new Redis({ host: '127.0.0.1', port: 6379 });
      redis.on('error', () => {});
      try {
        await restarting(redis, async (p, restart, url) => {
          const texts = Array.from({ length: 12 }, (_, i) => `redis ${i + 1} ${randomUUID().slice(0, 8)}`);
          for (const text of texts.slice(0, 4))
            assert.equal((await post(url(), 'track-people', { text })).status, 202);
          await waitForAlarm(p, texts[3]);
          await restart();
          // Published by the new server before the page is back: it gets them from the history in Redis.
          for (const text of texts.slice(4, 8))
            assert.equal((await post(url(), 'track-people', { text })).status, 202);
          await waitForState(p, 'open');
          for (const text of texts.slice(8))
            assert.equal((await post(url(), 'track-people', { text })).status, 202);
          await waitForAlarm(p, texts[11]);
          assert.deepEqual(await listed(p), texts);
          const notes = await p.evaluate(() =>
            [...document.querySelectorAll('#alarms li.note')].map((el) => el.className),
          );
          assert.deepEqual(notes, ['note recovered'], 'recovered, never resynchronized');
          const replayed = await p.evaluate(() => document.querySelectorAll('#alarms li.replayed').length);
          assert.equal(replayed, 4, 'the four alarms published while it was away came from the history');
        });
      } finally {
        redis.disconnect();
      }
    },
  );

  await check('history in memory: after a server restart the page shows that it resynchronized', async () => {
    await restarting(undefined, async (p, restart, url) => {
      assert.equal((await post(url(), 'track-people', { text: 'before restart' })).status, 202);
      await waitForAlarm(p, 'before restart');
      await restart();
      assert.equal((await post(url(), 'track-people', { text: 'lost in the restart' })).status, 202);
      await p.waitForSelector('#alarms li.note.resync', { timeout: STEP_TIMEOUT });
      const note = await p.textContent('#alarms li.note.resync');
      assert.match(note ?? '', /resynchronized.*lost its alarm history/);
      assert.equal((await post(url(), 'track-people', { text: 'after restart' })).status, 202);
      await waitForAlarm(p, 'after restart');
      assert.deepEqual(await listed(p), ['before restart', 'after restart']);
    });
  });

  await check('the page threw no errors', async () => {
    assert.deepEqual(pageErrors, []);
  });
} catch (err) {
  failed++;
  console.log('not ok - setup');
  console.log(
    `  ${String(err instanceof Error ? (err.stack ?? err.message) : err).replaceAll('\n', '\n  ')}`,
  );
} finally {
  await context?.close().catch((err) => console.error('# closing the browser failed:', err));
  await demo?.close().catch((err) => console.error('# closing the demo failed:', err));
  if (profile !== undefined) await rm(profile, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
