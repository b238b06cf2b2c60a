// How the service files (packaging/: the systemd unit, the OpenWrt procd
// script) start the daemon's Node, in one place: install.sh renders them
// with these values (a test holds the templates to this file), and
// `bench dns` starts its resolver the same way, so the memory it reports is
// the memory of the installed daemon.
//
// Measured by `npm run bench -- dns` (100k cached names, tagged):
// - V8's young generation: 16 MB a semi-space by default, ~30 MB of RSS once
//   touched. The resolver's hot path (UDP cache hits answered in place)
//   allocates next to nothing, so 2 MB costs no throughput there. 1 MB
//   (issue 17, a router's 80 MB), together with the name index reading its
//   keys where the lists keep them: `bench footprint` 79.1 -> 76.9 MB idle,
//   84.1 -> 81.5 MB at its household load, CPU within its spread (one run
//   each; the two were not measured apart).
// - glibc's malloc arenas: libnftables runs on libuv's pool threads, and one
//   arena per thread held ~50 MB more (fragments of freed netlink buffers).
//   Two arenas: 111.7 -> 53.7 MB of anonymous memory. One (issue 17): the
//   pool threads' and V8's compiler threads' freed memory is reused by the
//   main thread instead of held apart (the threads take turns on its lock;
//   each keeps its own small-block cache): 76.9 -> 75.3 MB idle, 81.5 ->
//   78.6 MB at the household load (one run each). (musl, OpenWrt's libc, has no per-thread arenas and ignores the
//   variable.)
// Together: ~190 -> ~117 MB with 100k names cached.
// - V8's GC on one thread (--single-threaded-gc) and a heap that grows by
//   half its live size (--heap-growing-percent=50). The daemon is one thread,
//   and on a router its core is shared with the kernel's forwarding and
//   wireguard-go: GC helper threads only contend with the main thread, which
//   waits for them. V8's own growth factor (up to 4x, from how fast GC keeps
//   up) made the same 100k names cost ~110 or ~230-300 MB from run to run.
//   `bench dns` (BD_NODE_FLAGS), loaded misses at 2000 q/s: p99 added
//   7-27 ms in 5 runs with V8's defaults (event loop late by up to 17-43
//   ms), 3.2-4.1 ms in 3 runs with these; RSS at 100k names 108-109 MB in
//   each; CPU per hit and per miss unchanged.
// - V8's tier-up (--interrupt-budget=16384, a quarter of V8's 67584): a
//   function is compiled by TurboFan after enough "ticks", each a budget's
//   worth of its bytecode executed, and big functions need more ticks
//   (3 + size/150). Tuned for web pages, that left the resolver's handlers
//   interpreted or in baseline code for minutes at a router's 50 queries a
//   second (`--trace-opt`: the last of them optimized ~90 s into the load).
//   `bench footprint` (issue 17) on a quiet machine, CPU at 50 q/s over a
//   120 s load phase: 2.35 % with it, 2.61 and 2.94 % without (separate
//   runs); over 300 s with it, minute by minute 2.67, 2.13, 1.92, 1.73,
//   2.02 (a 300 s run without it was not made). Start-up CPU 860-1470 ms
//   with it against 820-880 ms.
//
// V8 reads its heap flags only at start (v8.setFlagsFromString is too late)
// and glibc its tunables only at exec, so these cannot be set from inside;
// `splitwan run` started by hand without them works the same, with more
// memory, and says so in its start line.

/** Node's command-line flags, before the script. */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--single-threaded-gc', '--heap-growing-percent=50', '--interrupt-budget=16384'];

/** Environment variables of the daemon's process. */
export const DAEMON_ENV: Readonly<Record<string, string>> = { GLIBC_TUNABLES: 'glibc.malloc.arena_max=1' };

/** Which of these the running process lacks (for the start line). */
export function missingRuntimeSettings(execArgv: readonly string[] = process.execArgv, env: NodeJS.ProcessEnv = process.env): string[] {
  const missing = DAEMON_NODE_FLAGS.filter((f) => !execArgv.includes(f) && !(env.NODE_OPTIONS ?? '').split(/\s+/).includes(f));
  for (const [k, v] of Object.entries(DAEMON_ENV)) if (env[k] !== v) missing.push(`${k}=${v}`);
  return missing;
}
