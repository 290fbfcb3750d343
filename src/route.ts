/**
 * Path patterns such as `/alarms/:channel`: literal segments match themselves, `:name` matches one non-empty
 * segment and captures it (URL-decoded). The query string is never part of the match.
 */
import { Interned } from './interned.js';

export type RouteParams = Record<string, string>;
export type RouteMatcher = (pathname: string) => RouteParams | null;

export function compileRoute(pattern: string, option = 'path'): RouteMatcher {
  if (typeof pattern !== 'string' || !pattern.startsWith('/')) {
    throw new TypeError(
      `The "${option}" option must be a path pattern starting with "/"; got ${String(pattern)}`,
    );
  }
  const parts = pattern.split('/').slice(1);
  const names = new Set<string>();
  for (const part of parts) {
    if (part.startsWith(':')) {
      const name = part.slice(1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || names.has(name)) {
        throw new TypeError(`The "${option}" option has an invalid or repeated parameter ":${name}"`);
      }
      names.add(name);
    }
  }
  return (pathname) => {
    const segs = pathname.split('/').slice(1);
    if (segs.length !== parts.length) return null;
    const params: RouteParams = {};
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      const seg = segs[i] as string;
      if (part.startsWith(':')) {
        if (seg === '') return null;
        let value: string;
        try {
          value = decodeURIComponent(seg);
        } catch {
          return null;
        }
        params[part.slice(1)] = value;
      } else if (part !== seg) {
        return null;
      }
    }
    return params;
  };
}

/**
 * Matches a pathname against several patterns; the first that matches wins. The params of a path are frozen and
 * shared by every match of that path (each session keeps its params: thousands connect on the same path).
 */
export function compileRoutes(patterns: string | readonly string[], option = 'path'): RouteMatcher {
  const list = typeof patterns === 'string' ? [patterns] : patterns;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError(`The "${option}" option must be a path pattern or a non-empty array of them`);
  }
  const matchers = list.map((p) => compileRoute(p, option));
  const first: RouteMatcher = (pathname) => {
    for (const m of matchers) {
      const params = m(pathname);
      if (params !== null) return params;
    }
    return null;
  };
  const known = new Interned<Readonly<RouteParams>>(SHARED_PATHS);
  return (pathname) => {
    const params = first(pathname);
    // Only paths that match are held: a scan of random paths cannot push the real ones out.
    return params === null ? null : known.get(pathname, () => Object.freeze(params));
  };
}

/** Paths whose params each matcher holds at once. */
const SHARED_PATHS = 1024;
