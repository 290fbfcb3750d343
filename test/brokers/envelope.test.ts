import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EnvelopeError, PublishIds, decodeEnvelope, encodeEnvelope } from '../../brokers/envelope.js';
import type { Message } from '../../src/message.js';
import { encode } from '../../src/message.js';

describe('broker envelope', () => {
  it('round-trips text, binary, JSON and several channels', () => {
    const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256));
    const cases: [readonly string[], Message][] = [
      [['alarms'], encode('héllo ✓ \u{1F600}')],
      [['a', 'b.c', 'd e', '\u{1F600}'], encode(bytes)],
      [['json'], encode({ a: [1, 'ü'] })],
      [['empty'], encode('')],
      [['empty-bin'], encode(Buffer.alloc(0))],
    ];
    for (const [channels, message] of cases) {
      const wire = encodeEnvelope('node-1', channels, message);
      const out = decodeEnvelope(wire);
      expect(out?.origin).toBe('node-1');
      expect(out?.channels).toEqual(channels);
      expect(out?.message.binary).toBe(message.binary);
      if (message.binary) {
        expect(Buffer.isBuffer(out?.message.data)).toBe(true);
        expect((out?.message.data as Buffer).equals(message.bytes)).toBe(true);
      } else expect(out?.message.data).toBe(message.data);
    }
  });

  it('carries a publish id: one per publish, distinct across publishers with the same node id', () => {
    const ids = new PublishIds();
    const restarted = new PublishIds();
    const decoded = [
      encodeEnvelope('node', ['a', 'b'], encode('1'), ids),
      encodeEnvelope('node', ['a', 'b'], encode('2'), ids),
      encodeEnvelope('node', ['a', 'b'], encode('1'), restarted),
    ].map((wire) => decodeEnvelope(wire)?.id);
    expect(decoded[0]).toBe(`${ids.stream}.1.node`);
    expect(decoded[1]).toBe(`${ids.stream}.2.node`);
    expect(new Set(decoded).size).toBe(3);
    // One envelope is published on every channel: each copy carries the same id.
    const wire = encodeEnvelope('other', ['a', 'b'], encode('x'), ids);
    expect(decodeEnvelope(Buffer.from(wire))?.id).toBe(decodeEnvelope(wire)?.id);
  });

  it('a binary payload does not alias the receive buffer', () => {
    const wire = encodeEnvelope('n', ['c'], encode(Buffer.from([1, 2, 3])));
    const out = decodeEnvelope(wire);
    wire.fill(0);
    expect([...(out?.message.data as Buffer)]).toEqual([1, 2, 3]);
  });

  it("returns null for this node's own echo", () => {
    const wire = encodeEnvelope('me', ['c'], encode('x'));
    expect(decodeEnvelope(wire, 'me')).toBeNull();
    expect(decodeEnvelope(wire, 'you')?.message.data).toBe('x');
  });

  it('rejects malformed input with an EnvelopeError saying what is wrong', () => {
    const good = encodeEnvelope('node', ['chan'], encode('text'));
    const mutate = (at: number, value: number) => {
      const copy = Buffer.from(good);
      copy[at] = value;
      return copy;
    };
    const bad: [Uint8Array, RegExp][] = [
      [Buffer.alloc(0), /too short/],
      [Buffer.from('{"json":"is not an envelope"}'), /magic/],
      [mutate(1, 1), /version 1/],
      [mutate(1, 4), /version 4/],
      [mutate(2, 0x80), /flags/],
      // Version 2 knows only the binary flag; version 3 refuses a publish both keyed and volatile.
      [mutate(2, 0x02), /flags 0x2 for version 2/],
      [Buffer.from([...good.subarray(0, 1), 3, 0x06, ...good.subarray(3)]), /both volatile and keyed/],
      [Buffer.from([...good.subarray(0, 1), 3, 0x08, ...good.subarray(3)]), /flags 0x8 for version 3/],
      [mutate(4, 0), /origin length/],
      [mutate(4, 200), /truncated/],
      [good.subarray(0, 10), /too short/],
      [good.subarray(0, 22), /truncated in channel 0/],
      [mutate(20, 0), /no channel/],
      [mutate(22, 0), /channel 0 is empty/],
      [mutate(22, 90), /truncated/],
      [Buffer.concat([good, Buffer.from([0xff])]), /text payload is not valid UTF-8/],
      [mutate(5, 0xc3), /origin is not valid UTF-8/],
    ];
    for (const [bytes, reason] of bad) {
      expect(() => decodeEnvelope(bytes)).toThrow(EnvelopeError);
      expect(() => decodeEnvelope(bytes)).toThrow(reason);
    }
  });

  it('refuses names that cannot cross nodes intact', () => {
    expect(() => encodeEnvelope('n', ['\ud800x'], encode('x'))).toThrow(TypeError);
    expect(() => encodeEnvelope('n', ['c'], encode('x').with('\udc00', false))).toThrow(/key/);
    expect(() => encodeEnvelope('n', ['c'], encode('x').with('k'.repeat(70_000), false))).toThrow(RangeError);
    expect(() => encodeEnvelope('n', ['x'.repeat(70_000)], encode('x'))).toThrow(RangeError);
    expect(() => encodeEnvelope('n', [], encode('x'))).toThrow(RangeError);
    expect(() => encodeEnvelope('', ['c'], encode('x'))).toThrow(RangeError);
  });

  it('carries key and volatile (version 3); a plain publish is still written and read as version 2', () => {
    const keyed = encodeEnvelope('n', ['a', 'b'], encode({ t: 21.5 }).with('sensor-ü', false));
    const volatile = encodeEnvelope('n', ['a'], encode(Buffer.from([9])).with(undefined, true));
    const plain = encodeEnvelope('n', ['a'], encode('x'));
    expect([keyed[1], volatile[1], plain[1]]).toEqual([3, 3, 2]);
    const k = decodeEnvelope(keyed)?.message;
    expect([k?.data, k?.key, k?.volatile]).toEqual(['{"t":21.5}', 'sensor-ü', false]);
    const v = decodeEnvelope(volatile)?.message;
    expect([v?.binary, v?.key, v?.volatile]).toEqual([true, undefined, true]);
    const p = decodeEnvelope(plain)?.message;
    expect([p?.key, p?.volatile]).toEqual([undefined, false]);
    // Truncated in the key: count and lengths are checked as for the channels.
    const at = keyed.length - '{"t":21.5}'.length - Buffer.byteLength('sensor-ü') - 2;
    expect(() => decodeEnvelope(keyed.subarray(0, at + 1))).toThrow(/truncated before the key/);
    expect(() => decodeEnvelope(keyed.subarray(0, at + 4))).toThrow(/truncated in the key/);
    const empty = Buffer.from(keyed);
    empty.writeUInt16BE(0, at);
    expect(() => decodeEnvelope(empty)).toThrow(/the key is empty/);
  });

  it('reads a version 2 envelope as written by the previous release', () => {
    // Bytes of fanout's version 2 encoder: origin "old", stream 7, seq 1, channels "a" and "bc", text "hi".
    const v2 = Buffer.from('fa020000036f6c6400000007000000000001000200016100026263' + '6869', 'hex');
    const out = decodeEnvelope(v2);
    expect(out).toMatchObject({ origin: 'old', id: '7.1.old', channels: ['a', 'bc'] });
    expect([out?.message.data, out?.message.key, out?.message.volatile]).toEqual(['hi', undefined, false]);
  });

  it('property: every publish round-trips with its channels, payload, key and volatile', () => {
    const name = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 });
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { minLength: 1, maxLength: 5 }),
        fc.oneof(fc.string({ unit: 'grapheme' }), fc.uint8Array({ maxLength: 64 })),
        fc.oneof(fc.constant('plain'), fc.constant('volatile'), name),
        (channels, payload, mode) => {
          let message: Message = encode(typeof payload === 'string' ? payload : Buffer.from(payload));
          if (mode === 'volatile') message = message.with(undefined, true);
          else if (mode !== 'plain') message = message.with(mode, false);
          const wire = encodeEnvelope('node', channels, message);
          expect(wire[1]).toBe(mode === 'plain' ? 2 : 3);
          const out = decodeEnvelope(wire)?.message as Message;
          expect(decodeEnvelope(wire)?.channels).toEqual(channels);
          expect(out.binary).toBe(message.binary);
          expect(out.bytes.equals(message.bytes)).toBe(true);
          expect(out.key).toBe(message.key);
          expect(out.volatile).toBe(message.volatile);
        },
      ),
    );
  });
});
