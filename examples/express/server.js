// The alarm center with Express: the ws transport on the server Express listens on, POST /alarms/:channel
// publishes an alarm to that channel's sessions, GET /stats shows the counters. Run from a clone with
// `npm run build && node examples/express/server.js` (PORT and HOST from the environment, default 8080 and
// 127.0.0.1); Ctrl-C closes every session with 1001 and exits.
import express from 'express';
import { SessionRegistry } from 'fanout';
import { wsTransport } from 'fanout/transports/ws';

const registry = new SessionRegistry();
registry.on('error', (error, session) => console.error('fanout:', session?.id ?? '-', error.message));

const app = express();
app.use(express.json({ limit: '64kb' }));

app.post('/alarms/:channel', (req, res) => {
  const { level = 'info', text } = req.body ?? {};
  if (typeof text !== 'string' || text.length === 0)
    return void res.status(400).json({ error: 'text is required' });
  const alarm = { channel: req.params.channel, level, text, time: new Date().toISOString() };
  registry.publish(req.params.channel, alarm);
  res.status(202).json({ alarm, sessions: registry.count(req.params.channel) });
});
app.get('/stats', (_req, res) => void res.json(registry.stats()));
// A body that is not JSON (400) or too large (413): answer in JSON too.
app.use((err, _req, res, _next) => void res.status(err.status ?? 500).json({ error: err.message }));

// app.listen returns the http server: the transport handles its upgrades, Express its requests.
const server = app.listen(Number(process.env.PORT ?? 8080), process.env.HOST || '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`express alarm center listening on http://${address}:${port}/`);
});
wsTransport(registry, { server, path: '/alarms/:channel' });

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await registry.close(); // every session gets 1001
    server.close();
  });
}
