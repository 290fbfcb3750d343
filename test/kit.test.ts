/**
 * The transport kit is enough: our transports import nothing but the package index, and they compile against
 * the published declarations (dist/, built by `npm test` before vitest), in which the core's internals are not
 * reachable. A third-party transport has exactly the same parts.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const transports = readdirSync(`${root}/transports`).filter((f) => f.endsWith('.ts'));

describe('the transport kit', () => {
  it('is the only core a transport imports: every import of src/ is src/index.js', () => {
    expect(transports.length).toBeGreaterThan(0);
    for (const file of transports) {
      const text = readFileSync(`${root}/transports/${file}`, 'utf8');
      const core = [...text.matchAll(/from '(\.\.\/src\/[^']*)'/g)].map((m) => m[1]);
      expect(
        core.filter((path) => path !== '../src/index.js'),
        file,
      ).toEqual([]);
    }
  });

  it('builds our transports from the published declarations alone; internals are not reachable there', () => {
    expect(existsSync(`${root}/dist/src/index.d.ts`), 'dist/ is built (npm run build)').toBe(true);
    const dir = `${root}/test/.tmp/kit`;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(`${dir}/transports`, { recursive: true });
    mkdirSync(`${dir}/src`, { recursive: true });
    for (const file of transports) copyFileSync(`${root}/transports/${file}`, `${dir}/transports/${file}`);
    // The copies' '../src/index.js' is the published index and nothing else.
    writeFileSync(`${dir}/src/index.ts`, "export * from '../../../../dist/src/index.js';\n");
    writeFileSync(
      `${dir}/public.ts`,
      `import { BaseSession, SessionRegistry } from '../../../dist/src/index.js';
declare const registry: SessionRegistry;
declare const session: BaseSession;
// @ts-expect-error: transports attach with attachTransport(registry, transport)
void registry.attach;
// @ts-expect-error: the registry's membership record is internal
void session._channels;
// @ts-expect-error: the state machine's field is internal (state is the read-only view)
void session._state;
// @ts-expect-error: the host is for the session's own transport code only
void session.host;
// @ts-expect-error: the channel list is for the session's own transport code only
void session.channelList;
// @ts-expect-error: state is read-only
session.state = 'closed';
`,
    );
    const args = [
      tsc,
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      '--target',
      'ES2022',
      '--module',
      'NodeNext',
      '--moduleResolution',
      'NodeNext',
      '--types',
      'node',
      '--verbatimModuleSyntax',
      '--noImplicitOverride',
      '--noUncheckedIndexedAccess',
      `${dir}/public.ts`,
      ...transports.map((f) => `${dir}/transports/${f}`),
    ];
    let output = '';
    try {
      execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      output = String((err as { stdout?: string }).stdout ?? err);
    }
    expect(output).toBe('');
  }, 60_000);
});
