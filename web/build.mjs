// Builds the dashboard (web/src, TypeScript with preact + htm and uPlot) into
// dist/web-assets: app.js, app.css and index.html, served by the daemon
// (daemon/web/server.ts). No CDN: everything the page loads is in there.
// Fails when the whole of it is over BUDGET_GZ bytes gzipped.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const BUDGET_GZ = 150 * 1024;
const here = fileURLToPath(new URL('.', import.meta.url));
const out = join(here, '..', 'dist', 'web-assets');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(here, 'src', 'main.ts') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: out,
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
let raw = 0;
let gz = 0;
const sizes = [];
for (const f of readdirSync(out)) {
  const b = readFileSync(join(out, f));
  const z = gzipSync(b, { level: 9 }).length;
  raw += b.length;
  gz += z;
  sizes.push(`${f} ${b.length} B (${z} B gzipped)`);
}
console.log(`web: dist/web-assets: ${sizes.join(', ')}; all in ${raw} B, ${gz} B gzipped (budget ${BUDGET_GZ})`);
if (gz > BUDGET_GZ) {
  console.error(`web: the dashboard is ${gz} B gzipped, over its budget of ${BUDGET_GZ} B`);
  process.exit(1);
}
