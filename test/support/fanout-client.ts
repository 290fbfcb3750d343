import type { ClientMessage, FanoutClient } from '../../client/index.js';
import { within } from '../transports/clients.js';

/**
 * Records everything a `FanoutClient` emits: its messages, and its stream events as short strings
 * (`sub:<offset>`, `rec:<offset>:<count>`, `unrec:<reason>`, `gap:<from>-<to>`). `until` waits, bounded, for a
 * condition re-checked on every event the client emits (no polling).
 */
export function watchClient(c: FanoutClient) {
  const messages: ClientMessage[] = [];
  const events: string[] = [];
  let checks: (() => void)[] = [];
  const poke = () => {
    for (const check of checks.slice()) check();
  };
  c.on('message', (m) => {
    messages.push(m);
    poke();
  });
  const record = (event: string) => {
    events.push(event);
    poke();
  };
  c.on('subscribed', (e) => record(`sub:${e.position.offset}`));
  c.on('recovered', (e) => record(`rec:${e.position.offset}:${e.count}`));
  c.on('unrecoverable', (e) => record(`unrec:${e.reason}`));
  c.on('gap', (e) => record(`gap:${e.from}-${e.to}`));
  const until = (what: string, test: () => boolean, ms = 10_000) =>
    within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!test()) return;
          checks = checks.filter((x) => x !== check);
          resolve();
        };
        checks.push(check);
        check();
      }),
      ms,
      `${what} (messages ${messages.length}, events ${events.join(' ')})`,
    );
  /** Every message's data, as text. */
  const texts = () => messages.map((m) => m.data as string);
  /** The data of the messages of stream channels only (raw ones have no channel). */
  const streamTexts = () => messages.filter((m) => m.channel !== null).map((m) => m.data as string);
  return { c, messages, events, until, texts, streamTexts };
}
