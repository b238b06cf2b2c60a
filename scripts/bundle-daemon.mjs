// Bundles the built daemon (dist/daemon/cli.js, the tsc output) into
// dist/bundle/: splitwan.js and the chunks of what it imports lazily (the
// commands, the daemon itself, undici), one ES module each. bin/splitwan runs
// it; the tests' imports keep using dist/ and the sources.
//
// Why (issue 17, docs/design/footprint.md): Node holds every module file it
// loads (its source text, a module record, its compiled code). ~200 files of
// ours and ~350 of the dependencies cost the daemon ~10 MB of RSS and ~0.14 s
// of CPU at start more than one minified bundle of the same code.
//
// Kept as they are: koffi (a native addon), prom-client and dbus-next (loaded
// by createRequire on first use, which esbuild leaves alone, so they stay
// lazy and come from node_modules). The bundle sits two levels below the
// package root, as dist/config/ and dist/daemon/web/.. do, so the paths the
// modules compute from import.meta.url (config/schema.json, package.json,
// bin/splitwan, dist/web-assets) still resolve.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist', 'bundle');
rmSync(out, { recursive: true, force: true });
const r = await build({
  entryPoints: { splitwan: join(root, 'dist', 'daemon', 'cli.js') },
  bundle: true,
  // Lazy imports stay lazy: each `await import()` becomes a chunk of its own.
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.11',
  outdir: out,
  chunkNames: 'chunk-[hash]',
  // Whitespace and syntax only: names stay as written, so a stack trace in a
  // log or an "internal error" still reads (renaming them saved nothing measurable).
  // No keepNames: it wraps every function and class the code makes in a
  // `__name()` call (Object.defineProperty), closures on the DNS path too, and
  // changes their shape each time; names are not minified, so all it kept
  // was the name of one made unique by bundling (`parse2` instead of `parse`
  // in a trace). `bench footprint`, 50 q/s: 3.12 -> 2.87 % of a core.
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: false,
  external: ['koffi', 'prom-client', '@jellybrick/dbus-next'],
  // CommonJS dependencies (pino, yaml, ajv...) call require() for Node's own modules.
  banner: { js: "import{createRequire as __splitwanRequire}from'node:module';const require=__splitwanRequire(import.meta.url);" },
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});
const bytes = Object.values(r.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`bundle: dist/bundle: ${Object.keys(r.metafile.outputs).length} files, ${bytes} B, from ${Object.keys(r.metafile.inputs).length} modules`);
