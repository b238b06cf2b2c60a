// Wall-clock budgets inside a test, stretched when the test itself runs in an
// emulated Node (`npm run test:arch`: scripts/arch/pool.ts sets
// SPLITWAN_ARCH_POOL=emulated; emulated JS is ~10-20x slower), as the harness
// stretches vitest's own timeouts (scripts/arch/vitest.config.ts). A budget is
// never what a test checks: its bytes, counts and order stay as they are.
export const EMULATION_SLOW = process.env.SPLITWAN_ARCH_POOL === 'emulated' ? 10 : 1;

export function budget(ms: number): number {
  return ms * EMULATION_SLOW;
}
