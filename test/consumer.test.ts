/**
 * The package as a user gets it: `npm pack` (npm test has built dist/ already, so scripts are skipped here and
 * the build of the parallel test files is left alone), install the tarball with `ws` into a fresh temporary
 * project, type-check the README's quick start there as strict TypeScript (NodeNext, no skipLibCheck) with this
 * repository's compiler, and run it until a client receives one message. It catches what a test inside the
 * repository cannot: files missing from the package, exports that do not resolve, declarations that need
 * more than `@types/node`, source maps without their sources.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, Leftovers, within } from './transports/clients.js';
import { blocks } from './support/markdown.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const leftovers = new Leftovers();
const dir = mkdtempSync(join(tmpdir(), 'fanout-consumer-'));
/** The version this repository tests with, so that the install is served from the npm cache. */
const version = (name: string): string =>
  (JSON.parse(readFileSync(`${root}/node_modules/${name}/package.json`, 'utf8')) as { version: string })
    .version;

interface Packed {
  filename: string;
  files: { path: string }[];
}
let packed: Packed;

beforeAll(async () => {
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: root,
  });
  packed = (JSON.parse(stdout) as Packed[])[0] as Packed;
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  await run(
    'npm',
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      join(dir, packed.filename),
      `ws@${version('ws')}`,
      `@types/ws@${version('@types/ws')}`,
      `@types/node@${version('@types/node')}`,
    ],
    { cwd: dir, timeout: 120_000 },
  );
}, 150_000);

afterAll(async () => {
  await leftovers.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const quickStart = blocks('README.md').find((b) => b.lang === 'js' && b.heading === 'Quick start');

/** Runs this repository's tsc on a tsconfig written into the consumer project; resolves with its output. */
async function tsc(name: string, compilerOptions: Record<string, unknown>, files: string[]): Promise<string> {
  const base = {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
  };
  writeFileSync(join(dir, name), JSON.stringify({ compilerOptions: { ...base, ...compilerOptions }, files }));
  const tscBin = `${root}/node_modules/typescript/bin/tsc`;
  return run(process.execPath, [tscBin, '-p', name], { cwd: dir }).then(
    ({ stdout }) => stdout,
    (err: { stdout?: string; message: string }) => `tsc failed: ${err.stdout ?? err.message}`,
  );
}

describe('the packed package in a fresh project', () => {
  it('holds the build, the declarations, README and LICENSE, and no source maps', () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).toContain('LICENSE');
    expect(paths).toContain('README.md');
    expect(paths.filter((p) => p.endsWith('.map'))).toEqual([]);
    expect(paths.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts'))).toEqual([]);
    const pkg = JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as {
      exports: Record<string, string | { types: string; default: string }>;
    };
    for (const target of Object.values(pkg.exports)) {
      for (const file of typeof target === 'string' ? [target] : [target.types, target.default]) {
        expect(paths, file).toContain(file.replace(/^\.\//, ''));
      }
    }
  });

  it("type-checks the README's quick start as strict TypeScript, without skipLibCheck", async () => {
    expect(quickStart, 'the README has a js block under "Quick start"').toBeDefined();
    writeFileSync(join(dir, 'server.ts'), quickStart?.code ?? '');
    expect(await tsc('tsconfig.json', {}, ['server.ts'])).toBe('');
  }, 120_000);

  it('type-checks a program that imports only fanout, with types: [] (the declarations reference Node)', async () => {
    writeFileSync(
      join(dir, 'only.ts'),
      [
        "import { SessionRegistry, type Session } from 'fanout';",
        'const registry = new SessionRegistry<{ user: string }>();',
        'registry.on("message", (session: Session<{ user: string }>, data) => console.log(session.data.user, data));',
        '',
      ].join('\n'),
    );
    expect(await tsc('tsconfig.only.json', { types: [] }, ['only.ts'])).toBe('');
  }, 120_000);

  it('runs the quick start until a client receives a message', async () => {
    writeFileSync(join(dir, 'server.mjs'), quickStart?.code ?? '');
    const child = spawn(process.execPath, ['server.mjs'], { cwd: dir, env: { ...process.env, PORT: '0' } });
    leftovers.add(() => void child.kill('SIGKILL'));
    let output = '';
    const url = await within(
      new Promise<string>((resolve, reject) => {
        const look = (chunk: Buffer) => {
          output += chunk.toString();
          const m = /listening: (ws:\/\/\S+)/.exec(output);
          if (m) resolve(m[1] as string);
        };
        child.stdout.on('data', look);
        child.stderr.on('data', look);
        child.on('exit', (code) => reject(new Error(`the quick start exited with ${code}: ${output}`)));
      }),
      15_000,
      'the quick start to listen',
    );
    const client = await connect(leftovers, url);
    const [message] = await client.received(1);
    expect(JSON.parse(message as string)).toEqual({ level: 'critical', text: 'zone 3' });
  });
});
