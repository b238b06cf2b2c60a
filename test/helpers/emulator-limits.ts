// What the emulator refuses, asked each run, the way the daemon asks at start.
// Under `npm run test:arch` a test file runs in qemu-user, and qemu answers
// some socket calls itself instead of passing them to the kernel: it refuses
// setsockopt(SO_MARK) and getsockopt(SO_ORIGINAL_DST) (ENOPROTOOPT) and
// NETLINK_NETFILTER sockets (EPROTONOSUPPORT); scripts/arch/probe shows both with a static C program,
// natively and under qemu for each architecture (docs/design/architectures.md).
// The tests of exactly those calls skip loudly with the answer they got, only
// in an emulated Node and only for that answer: anywhere else (a real board,
// an emulator that passes the call) they run, and any other error fails them.
import { silentLogger, type Logger } from '../../lib/logger.js';
import { FallbackNotes, type NoteLogger } from '../../sys/native-fallback.js';

const emulated = (): boolean => process.env.SPLITWAN_ARCH_POOL === 'emulated';

/** A logger that keeps the reason of the fast path's fallback note. */
function noteCatcher(): { logger: NoteLogger; reason: () => string | null } {
  let reason: string | null = null;
  const keep = (o: object): void => void (reason = (o as { reason?: string }).reason ?? null);
  return { logger: { info: keep, warn: keep }, reason: () => reason };
}

/** In an emulated Node: why SO_MARK cannot be set (the emulator's ENOPROTOOPT), else null. */
export async function emulatorRefusesMark(): Promise<string | null> {
  if (!emulated()) return null;
  const { pathSocketsFor } = await import('../../daemon/sockets-linux.js');
  const c = noteCatcher();
  pathSocketsFor({ logger: c.logger, notes: new FallbackNotes() });
  const why = c.reason();
  return why !== null && /ENOPROTOOPT/.test(why) ? `the emulator refuses ${why} (qemu-user; scripts/arch/probe)` : null;
}

/** In an emulated Node: why a NETLINK_NETFILTER socket cannot be opened (the emulator's EPROTONOSUPPORT), else null. */
export async function emulatorRefusesNetfilterNetlink(): Promise<string | null> {
  if (!emulated()) return null;
  const { NetlinkElements } = await import('../../daemon/dataplane/libnft-linux.js');
  const c = noteCatcher();
  const logger: Logger = { ...silentLogger, info: c.logger.info, warn: c.logger.warn };
  const s = NetlinkElements.open(logger, { notes: new FallbackNotes() });
  s?.close();
  const why = c.reason();
  return s === null && why !== null && /Protocol not supported/.test(why) ? `the emulator refuses ${why} (qemu-user; scripts/arch/probe); libnftables exit()s on it, so it is not installed for the emulated architecture` : null;
}

/** In an emulated Node: why SO_ORIGINAL_DST cannot be read (the emulator's ENOPROTOOPT), else null. */
export async function emulatorRefusesOriginalDst(): Promise<string | null> {
  if (!emulated()) return null;
  const { originalDstProblem } = await import('../../sys/original-dst-probe-linux.js');
  let why: string | null;
  try {
    why = originalDstProblem();
  } catch {
    return null; // no C library (s390x: no koffi): the raw path's tests skip for that reason already
  }
  return why !== null && /ENOPROTOOPT/.test(why) ? `the emulator refuses ${why} (qemu-user)` : null;
}
