// Compiled by `tsc` (npm run typecheck), never run: proves listeners and publish are typed.
import { SessionRegistry, type BaseSession, type Session } from '../src/index.js';

interface Data {
  user: string;
}
interface Channels {
  'track-people': { level: 'critical' | 'info'; text: string };
  metrics: Uint8Array;
  [channel: `user:${string}`]: string;
}

const registry = new SessionRegistry<Data, Channels>();

registry.on('open', (session) => {
  const user: string = session.data.user;
  void user;
});
registry.on('close', (session: Session<Data>, code: number, reason: string) => void [session, code, reason]);
registry.on('error', (error: Error, session: Session<Data> | undefined) => void [error, session]);
registry.on('drop', (_session, reason) => {
  const r: 'backpressure' | 'closed' | 'error' = reason;
  void r;
});
registry.on('message', (_session, data: string | Buffer, isBinary: boolean) => void [data, isBinary]);

// @ts-expect-error: close listeners take (session, code, reason), the code is a number
registry.on('close', (_session: Session<Data>, code: string) => void code);
// @ts-expect-error: no such event
registry.on('opened', () => {});
registry.on('open', (session) => {
  // @ts-expect-error: session data is typed
  const n: number = session.data.user;
  void n;
});

registry.publish('track-people', { level: 'critical', text: 'zone 3' });
registry.publish('metrics', new Uint8Array([1]));
registry.publish('user:42', 'hello');
// @ts-expect-error: the payload type follows the channel
registry.publish('track-people', { level: 'panic', text: 'x' });
// @ts-expect-error: unknown channel
registry.publish('nope', 'x');
// @ts-expect-error: options are typed
registry.publish('metrics', new Uint8Array([1]), { exclude: [] });

// Internals are not part of the public types (the published .d.ts also strips `_channels` and `_state`; see
// test/kit.test.ts, which checks them against dist/).
declare const base: BaseSession<Data>;
// @ts-expect-error: transports attach with attachTransport(registry, transport); the registry has no attach()
void registry.attach;
// @ts-expect-error: a session's host is for its own transport code only (protected)
void base.host;
// @ts-expect-error: the channel list is for the session's own transport code only (protected)
void base.channelList;
// @ts-expect-error: state is read-only
base.state = 'closed';
