// Option and argument validation shared by the core, transports and brokers: errors name the option.

/** Throws a TypeError naming the first key of `options` that is not in `known`. */
export function assertKnownKeys(options: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option "${key}" for ${where}`);
  }
}

export function assertObject(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`The "${name}" option must be an object; got ${describe(value)}`);
  }
}

export function assertInteger(
  value: unknown,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`The "${name}" option must be an integer; got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`The "${name}" option must be between ${min} and ${max}; got ${value}`);
  }
  return value;
}

export function assertFunction(value: unknown, name: string): void {
  if (typeof value !== 'function') {
    throw new TypeError(`The "${name}" option must be a function; got ${describe(value)}`);
  }
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return typeof value === 'object' || typeof value === 'function'
    ? `a ${typeof value}`
    : `${typeof value} ${String(value)}`;
}

/** Validates a close code as ws and browsers accept it: 1000, 1001-1014 but reserved ones, 3000-4999. */
export function assertCloseCode(code: unknown, reason: unknown): void {
  if (
    typeof code !== 'number' ||
    !Number.isInteger(code) ||
    !(
      (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
      (code >= 3000 && code <= 4999)
    )
  ) {
    throw new RangeError(`The "code" argument must be a valid WebSocket close code; got ${String(code)}`);
  }
  if (typeof reason !== 'string') throw new TypeError('The "reason" argument must be a string');
  if (Buffer.byteLength(reason) > 123)
    throw new RangeError('The "reason" argument must be at most 123 bytes');
}
