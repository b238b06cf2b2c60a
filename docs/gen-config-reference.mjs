#!/usr/bin/env node
// Writes docs/config-reference.md from config/schema.json, with the renderer
// in config/schema-doc.ts. It runs from the build, so build first:
//
//   npm run build && node docs/gen-config-reference.mjs           # write the file
//   npm run build && node docs/gen-config-reference.mjs --check   # exit 1 if it is stale
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
let mod;
try {
  mod = await import('../dist/config/schema-doc.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  console.error('dist/config/schema-doc.js is missing: run `npm run build` first.');
  process.exit(2);
}
const check = process.argv.includes('--check');
const { file, upToDate } = mod.writeConfigReference(root, { check });
if (upToDate) console.log(`${file} is up to date`);
else if (check) {
  console.error(`${file} is out of date: run \`npm run build && node docs/gen-config-reference.mjs\``);
  process.exit(1);
} else console.log(`wrote ${file}`);
