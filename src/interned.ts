/**
 * One copy of a value that many sessions hold equal (the params of a path, the address of a proxy or a NAT):
 * a bounded table, emptied when full, so that distinct values cost nothing beyond it and repeated ones are held
 * once instead of once per session.
 */
export class Interned<T> {
  readonly #table = new Map<string, T>();
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The value held for `key`, made by `make` (and held) when there is none. */
  get(key: string, make: (key: string) => T): T {
    let value = this.#table.get(key);
    if (value !== undefined) return value;
    value = make(key);
    if (this.#table.size >= this.#limit) this.#table.clear();
    this.#table.set(key, value);
    return value;
  }
}
