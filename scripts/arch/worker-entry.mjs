// The emulated vitest worker's first script (scripts/arch/pool.ts): loads
// vitest's own worker (argv[2]: vitest/dist/workers/forks.js), then says so.
// Under emulation loading it takes tens of seconds (more for s390x on a busy
// machine), and vitest gives a worker 60 s from its start message to its
// answer: the pool waits for this line before vitest starts counting.
import { pathToFileURL } from 'node:url';

await import(pathToFileURL(process.argv[2]).href);
process.send?.({ type: 'splitwan-arch-ready' });
