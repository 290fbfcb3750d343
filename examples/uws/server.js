// The alarm center on a uWebSockets.js app: the uWS transport on /alarms/:channel, POST /alarms/:channel
// publishes an alarm to that channel's sessions, GET /stats shows the counters. Run from a clone with
// `npm run build && node examples/uws/server.js` (PORT and HOST from the environment, default 8080 and
// 127.0.0.1); Ctrl-C closes every session with 1001 and exits.
import uWS from 'uWebSockets.js';
import { SessionRegistry } from 'fanout';
import { assertNativeUws, uwsTransport } from 'fanout/transports/uws';

assertNativeUws(uWS);
const registry = new SessionRegistry();
registry.on('error', (error, session) => console.error('fanout:', session?.id ?? '-', error.message));

const app = uWS.App();
uwsTransport(registry, { app, path: '/alarms/:channel' });

/** Answers with a status and a JSON body, in one cork (uWS writes it in one syscall). */
function json(res, status, body) {
  res.cork(() =>
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify(body)),
  );
}

// Plain HTTP requests on the same paths reach these routes; WebSocket upgrades reach the transport.
app.post('/alarms/:channel', (res, req) => {
  const channel = req.getParameter(0); // read the request before any callback: uWS reuses it
  let body = Buffer.alloc(0);
  let aborted = false;
  res.onAborted(() => (aborted = true));
  res.onData((chunk, last) => {
    if (aborted) return;
    body = Buffer.concat([body, Buffer.from(chunk)]); // chunk is only valid during this call: copy it
    if (body.length > 64 * 1024) {
      aborted = true; // answered: ignore the rest of the body
      return json(res, '413 Payload Too Large', { error: 'body over 64 KiB' });
    }
    if (!last) return;
    let alarm;
    try {
      const { level = 'info', text } = JSON.parse(body.toString('utf8'));
      if (typeof text !== 'string' || text.length === 0) throw new Error('text is required');
      alarm = { channel, level, text, time: new Date().toISOString() };
    } catch (err) {
      return json(res, '400 Bad Request', { error: err.message });
    }
    registry.publish(channel, alarm);
    json(res, '202 Accepted', { alarm, sessions: registry.count(channel) });
  });
});
app.get('/stats', (res) => json(res, '200 OK', registry.stats()));

const host = process.env.HOST || '127.0.0.1';
app.listen(host, Number(process.env.PORT ?? 8080), (listenSocket) => {
  if (!listenSocket) throw new Error(`could not listen on ${host}:${process.env.PORT ?? 8080}`);
  console.log(`uws alarm center listening on http://${host}:${uWS.us_socket_local_port(listenSocket)}/`);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, async () => {
      await registry.close(); // every session gets 1001
      uWS.us_listen_socket_close(listenSocket); // the last handle: the process exits
    });
  }
});
