// The vitest config of `npm run test:arch` (scripts/test-arch.ts starts
// vitest with it and these variables set):
//   SPLITWAN_ARCH_NODE  the foreign Node the test files run in (the emulated pool)
//   SPLITWAN_ARCH_QEMU  qemu-<arch>-static to run it with; empty where binfmt_misc does
//   SPLITWAN_ARCH_POOL  `host`: this machine's Node runs the test files (the e2e
//                       group: only the daemon it spawns is emulated, through
//                       SPLITWAN_TEST_NODE, test/helpers/daemon.ts)
// Timeouts are the project's times ten: emulated JS runs ~5-20x slower, and a
// test that fails only for that says nothing about the architecture.
import { endianness } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig } from 'vitest/config';
import base from '../../vitest.config.js';
import { emulatedPool } from './pool.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const node = process.env.SPLITWAN_ARCH_NODE ?? '';
const qemu = process.env.SPLITWAN_ARCH_QEMU || null;
const host = process.env.SPLITWAN_ARCH_POOL === 'host';
/** The foreign Node's byte order (BE, LE): a worker of the other one has its strings mended (pool.ts). */
const swapped = (process.env.SPLITWAN_ARCH_ENDIAN ?? endianness()) !== endianness();
if (!host && node === '') throw new Error('SPLITWAN_ARCH_NODE is not set: run this config through `npm run test:arch -- ARCH`');

export default mergeConfig(
  base,
  defineConfig({
    root,
    test: {
      testTimeout: 200_000,
      hookTimeout: 600_000,
      teardownTimeout: 60_000,
      ...(host ? {} : { pool: emulatedPool({ node, qemu, swapped }) }),
    },
  }),
);
