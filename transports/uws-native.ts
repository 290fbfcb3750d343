/**
 * Is this uWebSockets.js the native binary?
 *
 * Why: the unofficial build used here (`@trufflesuite/uws-js-unofficial`) falls back, with nothing more than a
 * console warning, to a pure-JS imitation built on `ws` when its binary does not load (another Node ABI, another
 * platform, `UWS_USE_FALLBACK=1`). The imitation is slow and behaves differently; a benchmark or a test that
 * runs on it measures the wrong thing. The native build's functions are V8 API functions whose source text is
 * `function () { [native code] }`; the imitation's are JavaScript.
 */

/** What the checks look at: the module (`App`) or an app (`ws`, `publish`). */
type Inspectable = { App?: unknown; ws?: unknown; publish?: unknown };

const nativeSource = /^function [\w$]*\s*\(\)\s*\{\s*\[native code\]\s*\}$/;

function isNativeFunction(value: unknown): boolean {
  return typeof value === 'function' && nativeSource.test(Function.prototype.toString.call(value));
}

/**
 * True when `uws` is the native uWebSockets.js: either the module (its `App` is native code) or an app made
 * by it (its `ws` and `publish` methods are native code). False for the pure-JS fallback and anything else.
 */
export function isNativeUws(uws: unknown): boolean {
  if ((typeof uws !== 'object' && typeof uws !== 'function') || uws === null) return false;
  const target = uws as Inspectable;
  if (target.App !== undefined) return isNativeFunction(target.App);
  return isNativeFunction(target.ws) && isNativeFunction(target.publish);
}

/**
 * Throws when `uws` (the module or an app) is not the native uWebSockets.js, with the likely cause. Call it where
 * a fallback must not pass silently: a benchmark, a test setup, a production start-up check.
 */
export function assertNativeUws(uws: unknown, what = 'uWebSockets.js'): void {
  if (isNativeUws(uws)) return;
  throw new Error(
    `${what} is not the native binary: the pure-JS fallback (or something else) was loaded. ` +
      `Check that a binary exists for this platform and Node ABI (process.versions.modules = ` +
      `${process.versions.modules}) and that UWS_USE_FALLBACK is not set.`,
  );
}
