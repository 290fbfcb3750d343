// Prints the size of fanout/client as a browser gets it: bundled, minified (esbuild), then gzip -9.
// `npm run size:client`; `--json` prints one JSON line instead.
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const entry = fileURLToPath(new URL('../client/index.ts', import.meta.url));
const result = await build({
  entryPoints: [entry],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  platform: 'neutral',
  write: false,
  logLevel: 'silent',
});
const code = result.outputFiles[0].contents;
const sizes = { minified: code.length, gzip: gzipSync(code, { level: 9 }).length };
if (process.argv.includes('--json')) console.log(JSON.stringify(sizes));
else console.log(`fanout/client: ${sizes.minified} bytes minified, ${sizes.gzip} bytes minified + gzip`);
