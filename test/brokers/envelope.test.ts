import { describe, expect, it } from 'vitest';
import { EnvelopeError, decodeEnvelope, encodeEnvelope } from '../../src/brokers/envelope.js';
import { encode, type Message } from '../../src/message.js';

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
      [mutate(1, 2), /version 2/],
      [mutate(2, 0x80), /flags/],
      [mutate(4, 0), /origin length/],
      [mutate(4, 200), /truncated/],
      [good.subarray(0, 10), /truncated/],
      [mutate(10, 0), /no channel/],
      [mutate(12, 0), /channel 0 is empty/],
      [mutate(12, 90), /truncated/],
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
    expect(() => encodeEnvelope('n', ['x'.repeat(70_000)], encode('x'))).toThrow(RangeError);
    expect(() => encodeEnvelope('n', [], encode('x'))).toThrow(RangeError);
    expect(() => encodeEnvelope('', ['c'], encode('x'))).toThrow(RangeError);
  });
});
