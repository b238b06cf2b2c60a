// The C library names sys/libc-linux.ts tries, asked of a real musl dynamic
// loader (Debian's musl-tools: musl-gcc and /lib/ld-musl-x86_64.so.1), as
// koffi.load() asks it on OpenWrt and Alpine: koffi.load(name) is
// dlopen(name, RTLD_NOW). A small C program built with musl-gcc dlopen()s
// each name in loadLibc's order and says which loaded and where the
// functions the native paths call come from. There is no musl Node on this
// machine (none on the npm registry, Alpine's mirrors are out of reach), so
// koffi's musl_x64 build itself cannot be loaded here.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { libcCandidates } from '../../sys/libc-linux.js';

// musl-gcc builds x86_64 programs: on another architecture (test:arch) there is nothing to ask.
const x64 = process.arch === 'x64';
const hasMusl = x64 && spawnSync('musl-gcc', ['--version']).status === 0;
const inCi = Boolean(process.env.CI);
const skip = !x64 || (!hasMusl && !inCi);
if (skip) console.warn(`[test/integration/libc-musl] SKIPPED: ${process.arch !== 'x64' ? `musl-gcc targets x86_64, this is ${process.arch}` : 'musl-gcc missing (apt-get install musl-tools)'}`);

const PROBE = String.raw`
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
  const char *syms[] = { "recvmmsg", "sendmmsg", "splice", "accept4", "epoll_create1", "setsockopt", 0 };
  printf("[");
  for (int i = 1; i < argc; i++) {
    void *h = dlopen(argv[i], RTLD_NOW);
    printf("%s{\"name\":\"%s\",\"loaded\":%s", i > 1 ? "," : "", argv[i], h ? "true" : "false");
    if (h) {
      printf(",\"from\":{");
      for (int s = 0; syms[s]; s++) {
        void *f = dlsym(h, syms[s]);
        Dl_info info = {0};
        printf("%s\"%s\":\"%s\"", s ? "," : "", syms[s], f && dladdr(f, &info) && info.dli_fname ? info.dli_fname : "");
      }
      printf("}");
    }
    printf("}");
  }
  printf("]\n");
  return 0;
}
`;

let dir: string | null = null; // made by the first probe: a skipped file leaves nothing behind
afterAll(() => {
  if (dir !== null) rmSync(dir, { recursive: true, force: true });
});

interface Probe {
  name: string;
  loaded: boolean;
  from?: Record<string, string>;
}

function probe(names: string[]): Probe[] {
  dir ??= mkdtempSync(join(tmpdir(), `splitwan-musl-${process.pid}-`));
  const src = join(dir, 'probe.c');
  const bin = join(dir, 'probe');
  writeFileSync(src, PROBE);
  execFileSync('musl-gcc', ['-O1', '-o', bin, src]);
  // It must be a musl program: its interpreter is musl's loader.
  expect(execFileSync('readelf', ['-l', bin], { encoding: 'utf8' })).toContain('ld-musl-x86_64.so.1');
  return JSON.parse(execFileSync(bin, names, { encoding: 'utf8' })) as Probe[];
}

describe.skipIf(skip)('libc names under a real musl loader', () => {
  it('the first name loadLibc tries that loads is musl itself, with every function the native paths call', () => {
    expect(hasMusl, 'CI installs musl-tools (.ci/run)').toBe(true);
    const got = probe(libcCandidates('x64'));
    const first = got.find((p) => p.loaded);
    expect(first, JSON.stringify(got)).toBeDefined();
    for (const [sym, from] of Object.entries(first!.from!)) {
      // musl's libc is its loader: /lib/ld-musl-x86_64.so.1 (Debian, Alpine, OpenWrt alike).
      expect(from, `${sym} from ${first!.name}`).toMatch(/ld-musl-x86_64\.so\.1|libc\.musl-x86_64\.so\.1|x86_64-linux-musl\/libc\.so/);
    }
  });

  it('musl answers every libc.* name with itself (its reserved names): glibc is never loaded into a musl process', () => {
    const got = probe(['libc.so.6', 'libc.musl-x86_64.so.1', 'libc.so', '/lib/ld-musl-x86_64.so.1']);
    for (const p of got) {
      expect(p.loaded, p.name).toBe(true);
      expect(p.from!.recvmmsg, p.name).toMatch(/musl/);
    }
  });

  it('a name that is not there fails to load (the fallback path: loadLibc tries the next)', () => {
    expect(probe(['libdoes-not-exist.so.9'])).toEqual([{ name: 'libdoes-not-exist.so.9', loaded: false }]);
  });
});
