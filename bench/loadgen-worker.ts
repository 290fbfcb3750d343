/**
 * One load-generator thread: a share of the clients, each a raw socket with a frame-header parser. It counts
 * what each client receives, checks the sequence, and records publish -> receive latency from the stamp.
 */
import net from 'node:net';
import { parentPort } from 'node:worker_threads';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import {
  FrameReader,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  clientFrame,
  findStamp,
  readDigits,
  upgradeRequest,
} from './frames.js';
import { createHistogram, record } from './histogram.js';
import type { ArmSpec, ClientKind, ConnectSpec, LoadCommand, LoadReply, RunResult } from './protocol.js';

const port = parentPort;
if (port === null) throw new Error('loadgen-worker must run in a worker thread');
const post = (m: LoadReply): void => port.postMessage(m);

const HANDSHAKE = 0;
const SIO_OPEN = 1;
const SIO_CONNECT = 2;
const READY = 3;
const CLOSED = 4;

const SIO_CONNECT_FRAME = clientFrame(OP_TEXT, '40');
const SIO_PONG_FRAME = clientFrame(OP_TEXT, '3');

class Client {
  readonly index: number;
  readonly socket: net.Socket;
  readonly kind: ClientKind;
  readonly reader = new FrameReader();
  state = HANDSHAKE;
  head: Buffer | null = null;
  expected = 0;
  received = 0;
  disordered = false;
  stalled = false;
  done = false;
  onReady: (() => void) | null;
  onFail: ((why: string) => void) | null;

  constructor(
    index: number,
    socket: net.Socket,
    kind: ClientKind,
    onReady: () => void,
    onFail: (w: string) => void,
  ) {
    this.index = index;
    this.socket = socket;
    this.kind = kind;
    this.onReady = onReady;
    this.onFail = onFail;
  }

  ready(): void {
    this.state = READY;
    const cb = this.onReady;
    this.onReady = this.onFail = null;
    cb?.();
  }

  fail(why: string): void {
    const cb = this.onFail;
    this.onReady = this.onFail = null;
    cb?.(why);
  }
}

const clients: Client[] = [];

// The current run.
let run: ArmSpec | null = null;
let last = 0;
let healthy = 0;
let armedHealthy = 0;
let complete = 0;
let received = 0;
let stalledReceived = 0;
let disordered = 0;
let closedInRun = 0;
let firstRecvNs = 0;
let lastRecvNs = 0;
let hist = createHistogram();
let eluStart: EventLoopUtilization | null = null;
let eluAtEnd = 0;
let announced = false;

const readBuffer = Buffer.allocUnsafe(256 * 1024);

function onRead(c: Client, nread: number, buf: Uint8Array): boolean {
  if (nread > 0) onData(c, (buf as Buffer).subarray(0, nread));
  return true;
}

function onData(c: Client, chunk: Buffer): void {
  const now = Number(process.hrtime.bigint());
  if (c.state === HANDSHAKE) {
    const buf: Buffer = c.head === null ? chunk : Buffer.concat([c.head, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1) {
      if (buf.length > 8192) c.socket.destroy();
      c.head = Buffer.from(buf);
      return;
    }
    c.head = null;
    if (buf.toString('latin1', 0, 12) !== 'HTTP/1.1 101') {
      c.fail(buf.toString('latin1', 0, Math.min(end, 80)));
      c.socket.destroy();
      return;
    }
    if (c.kind === 'ws') c.ready();
    else c.state = SIO_OPEN;
    if (buf.length > end + 4) feed(c, buf.subarray(end + 4), now);
    return;
  }
  feed(c, chunk, now);
}

function feed(c: Client, chunk: Buffer, now: number): void {
  c.reader.feed(chunk, (op, buf, start, available, length) => {
    if (op === OP_TEXT || op === OP_BINARY) onMessage(c, buf, start, available, length, now);
    else if (op === OP_PING)
      c.socket.write(clientFrame(OP_PONG, Buffer.from(buf.subarray(start, start + length))));
    else if (op === OP_CLOSE) c.socket.destroy();
  });
}

function onMessage(
  c: Client,
  buf: Buffer,
  start: number,
  available: number,
  length: number,
  now: number,
): void {
  if (c.kind === 'sio') {
    const t = buf[start];
    if (length === 1 && t === 0x32) {
      c.socket.write(SIO_PONG_FRAME); // engine ping '2' -> pong '3'
      return;
    }
    if (c.state === SIO_OPEN && t === 0x30) {
      c.state = SIO_CONNECT;
      c.socket.write(SIO_CONNECT_FRAME); // connect the main namespace
      return;
    }
    if (c.state === SIO_CONNECT && t === 0x34 && buf[start + 1] === 0x30) {
      c.ready();
      return;
    }
    if (t !== 0x34 || buf[start + 1] !== 0x32) return; // only '42' events carry the bench payload
  }
  const at = findStamp(buf, start, available);
  if (at === -1 || run === null) return;
  const seq = readDigits(buf, at + 1, 10);
  const ts = readDigits(buf, at + 12, 10) * 1e10 + readDigits(buf, at + 22, 10);
  if (seq < run.firstSeq || seq >= last) return; // a straggler from an earlier run
  if (c.stalled) {
    stalledReceived++;
    return;
  }
  if (eluStart === null) {
    eluStart = performance.eventLoopUtilization();
    firstRecvNs = now;
  }
  if (seq !== c.expected && !c.disordered) {
    c.disordered = true;
    disordered++;
  }
  c.expected = seq + 1;
  c.received++;
  received++;
  record(hist, (now - ts) / 1000);
  if (now > lastRecvNs) lastRecvNs = now;
  if (c.received === run.messages && !c.done) {
    c.done = true;
    complete++;
    if (complete === healthy) finish();
  }
}

function finish(): void {
  if (announced || run === null) return;
  announced = true;
  if (eluStart !== null) eluAtEnd = performance.eventLoopUtilization(eluStart).utilization;
  post({ op: 'complete', id: run.id });
}

function connectAll(spec: ConnectSpec): void {
  const deadline = setTimeout(() => done(`connect timed out after ${spec.timeoutMs} ms`), spec.timeoutMs);
  let next = 0;
  let inFlight = 0;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  let finished = false;
  const request = upgradeRequest('127.0.0.1', spec.port, spec.path);

  function done(error?: string): void {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    post({ op: 'connected', ok, failed: failed + (spec.count - ok - failed), error: error ?? firstError });
  }

  function settle(err?: string): void {
    inFlight--;
    if (err === undefined) ok++;
    else {
      failed++;
      firstError ??= err;
    }
    if (ok + failed === spec.count) done();
    else pump();
  }

  function pump(): void {
    while (!finished && inFlight < spec.concurrency && next < spec.count) {
      const global = spec.first + next++;
      inFlight++;
      // Binding a source address costs a port search per connect: only past the first address's share.
      const source = Math.floor(global / spec.perAddress);
      let client: Client | null = null;
      const socket = net.connect({
        host: '127.0.0.1',
        port: spec.port,
        noDelay: true,
        ...(source === 0 ? {} : { localAddress: `127.0.0.${1 + source}` }),
        // One read buffer for every socket of this thread: no allocation per read (the parser copies what it
        // keeps across reads).
        onread: {
          buffer: readBuffer,
          callback: (nread: number, buf: Uint8Array) => onRead(client!, nread, buf),
        },
      });
      client = new Client(
        global,
        socket,
        spec.client,
        () => settle(),
        (why) => settle(why),
      );
      clients.push(client);
      socket.on('connect', () => socket.write(request));
      socket.on('error', (err) => client.fail(err.message));
      socket.on('close', () => {
        if (client.state !== READY) client.fail('closed during the handshake');
        client.state = CLOSED;
        if (run !== null && !client.stalled && !client.done) {
          closedInRun++;
          // A closed client will never complete: stop waiting for it.
          healthy--;
          if (complete === healthy) finish();
        }
      });
    }
  }
  if (spec.count === 0) done();
  else pump();
}

function arm(spec: ArmSpec): void {
  run = spec;
  last = spec.firstSeq + spec.messages;
  const stalled = new Set(spec.stalled);
  healthy = 0;
  complete = received = stalledReceived = disordered = closedInRun = 0;
  firstRecvNs = lastRecvNs = 0;
  hist = createHistogram();
  eluStart = null;
  eluAtEnd = 0;
  announced = false;
  for (const c of clients) {
    c.expected = spec.firstSeq;
    c.received = 0;
    c.disordered = false;
    c.done = false;
    if (stalled.has(c.index)) {
      c.stalled = true;
      c.socket.pause();
    }
    if (c.state === READY && !c.stalled) healthy++;
  }
  armedHealthy = healthy;
  post({ op: 'armed' });
  if (healthy === 0) finish();
}

function collect(id: number): void {
  const result: RunResult = {
    id,
    clients: armedHealthy,
    complete,
    received,
    stalledReceived,
    disordered,
    closed: closedInRun,
    firstRecvNs,
    lastRecvNs,
    hist: Array.from(hist),
    maxElu: announced
      ? eluAtEnd
      : eluStart === null
        ? 0
        : performance.eventLoopUtilization(eluStart).utilization,
    cpuUs: 0,
    wallNs: lastRecvNs - firstRecvNs,
  };
  run = null;
  post({ op: 'result', result });
}

port.on('message', (cmd: LoadCommand) => {
  switch (cmd.op) {
    case 'connect':
      connectAll(cmd.spec);
      break;
    case 'arm':
      arm(cmd.spec);
      break;
    case 'collect':
      collect(cmd.id);
      break;
    case 'release-stalled':
      for (const c of clients) if (c.stalled && !c.socket.destroyed) c.socket.resetAndDestroy();
      post({ op: 'released' });
      break;
    case 'stop':
      // RST instead of FIN: no TIME_WAIT left on the client side, whose ephemeral ports the next run needs.
      for (const c of clients) if (!c.socket.destroyed) c.socket.resetAndDestroy();
      post({ op: 'stopped' });
      port.close();
      break;
  }
});
