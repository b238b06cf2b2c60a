// A native fast path that is off says why, once, through the logger it was
// given: the notes themselves, and each fast path's choice where it can be
// made to fall back here (an environment variable, a splicer without fds, a
// Node without dgram's state symbol). That a fast path that cannot load at
// all (no koffi) falls back and says so, and the proxy's accept path on a
// real socket: test/integration/native-fallback.test.ts.
import { describe, expect, it } from 'vitest';
import { FallbackNotes, reasonOf } from '../../sys/native-fallback.js';
import { defaultUdpTransport } from '../../dns/udp-mmsg-linux.js';
import { defaultSplicer } from '../../proxy/splice-linux.js';
import { dgramFd } from '../../sys/socket-fd.js';
import { nativeUnavailable } from '../helpers/native.js';

interface Line {
  level: 'info' | 'warn';
  obj: object;
  msg: string;
}
function recorder(): { lines: Line[]; info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; debug(): void } {
  const lines: Line[] = [];
  return { lines, info: (obj, msg) => void lines.push({ level: 'info', obj, msg: msg ?? '' }), warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg: msg ?? '' }), debug: () => {} };
}

describe('FallbackNotes', () => {
  it('says each fast path once: info when asked for, warn when it could not run', () => {
    const notes = new FallbackNotes();
    const log = recorder();
    notes.note(log, 'resolver UDP: recvmmsg', 'SPLITWAN_DNS_UDP=dgram', 'node:dgram', true);
    notes.note(log, 'resolver UDP: recvmmsg', 'SPLITWAN_DNS_UDP=dgram', 'node:dgram', true);
    notes.note(log, 'proxy bytes: splice(2)', 'no C library could be loaded (libc.so.6: nope)', "Node's streams (pipe())");
    expect(log.lines).toEqual([
      { level: 'info', obj: { fastPath: 'resolver UDP: recvmmsg', reason: 'SPLITWAN_DNS_UDP=dgram' }, msg: 'resolver UDP: recvmmsg fast path off (SPLITWAN_DNS_UDP=dgram): using node:dgram' },
      {
        level: 'warn',
        obj: { fastPath: 'proxy bytes: splice(2)', reason: 'no C library could be loaded (libc.so.6: nope)' },
        msg: "proxy bytes: splice(2) fast path off (no C library could be loaded (libc.so.6: nope)): using Node's streams (pipe())",
      },
    ]);
  });

  it('a note with no logger to hear it is kept for the first one that has one', () => {
    const notes = new FallbackNotes();
    const log = recorder();
    notes.note(undefined, 'x', 'why', 'y');
    notes.note(log, 'x', 'why', 'y');
    expect(log.lines).toHaveLength(1);
  });

  it('a reason is the first line of what was thrown', () => {
    expect(reasonOf(new Error('Cannot find the native Koffi module\n  at ...'))).toBe('Cannot find the native Koffi module');
    expect(reasonOf('plain')).toBe('plain');
  });
});

describe('each fast path says why it is off, once', () => {
  it('resolver UDP: SPLITWAN_DNS_UDP=dgram', () => {
    const notes = new FallbackNotes();
    const log = recorder();
    expect(defaultUdpTransport({ SPLITWAN_DNS_UDP: 'dgram' }, { logger: log, notes }).name).toBe('dgram');
    expect(defaultUdpTransport({ SPLITWAN_DNS_UDP: 'dgram' }, { logger: log, notes }).name).toBe('dgram');
    expect(log.lines.map((l) => [l.level, l.msg])).toEqual([['info', 'resolver UDP: recvmmsg fast path off (SPLITWAN_DNS_UDP=dgram): using node:dgram']]);
    // On: nothing to say (where native code can run: test/helpers/native.ts).
    if (process.platform === 'linux' && nativeUnavailable() === null) {
      const quiet = recorder();
      expect(defaultUdpTransport({}, { logger: quiet, notes: new FallbackNotes() }).name).toBe('recvmmsg');
      expect(quiet.lines).toEqual([]);
    }
  });

  it('proxy bytes: SPLITWAN_PROXY_SPLICE=pipe', () => {
    const notes = new FallbackNotes();
    const log = recorder();
    expect(defaultSplicer({ SPLITWAN_PROXY_SPLICE: 'pipe' }, { logger: log, notes }).name).toBe('pipe');
    expect(defaultSplicer({ SPLITWAN_PROXY_SPLICE: 'pipe' }, { logger: log, notes }).name).toBe('pipe');
    expect(log.lines.map((l) => [l.level, l.msg])).toEqual([['info', "proxy bytes: splice(2) fast path off (SPLITWAN_PROXY_SPLICE=pipe): using Node's streams (pipe())"]]);
  });

  it('path sockets: a Node without dgram\'s state symbol is read through _handle, said once', () => {
    const notes = new FallbackNotes();
    const log = recorder();
    const old = { _handle: { fd: 42 } } as unknown as Parameters<typeof dgramFd>[0];
    expect(dgramFd(old, { logger: log, notes })).toBe(42);
    expect(dgramFd(old, { logger: log, notes })).toBe(42);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]!.msg).toBe(`path sockets: the dgram fd from its state fast path off (Node ${process.version} has no 'state symbol' on a dgram socket): using its deprecated _handle (DEP0112)`);
    expect(log.lines[0]!.level).toBe('warn');
  });
});


describe('SPLITWAN_NATIVE=off', () => {
  it('every fast path takes its fallback, said as chosen (info); path sockets become source-port paths', async () => {
    const { pathSocketsFor, originalDstFor } = await import('../../daemon/sockets-linux.js');
    const { nativeTurnedOff } = await import('../../sys/native-fallback.js');
    expect(nativeTurnedOff({ SPLITWAN_NATIVE: 'off' })).toBe('SPLITWAN_NATIVE=off');
    expect(nativeTurnedOff({})).toBeNull();
    const before = process.env.SPLITWAN_NATIVE;
    process.env.SPLITWAN_NATIVE = 'off';
    try {
      const notes = new FallbackNotes();
      const log = recorder();
      const sockets = pathSocketsFor({ logger: log, notes });
      expect(sockets.byPort).toBe(true);
      const dst = originalDstFor({ run: () => Promise.reject(new Error('not run here')) }, { logger: log, notes });
      expect(dst.name).not.toBe('originalDst');
      expect(defaultUdpTransport(process.env, { logger: log, notes }).name).toBe('dgram');
      expect(log.lines.map((l) => [l.level, l.msg])).toEqual([
        ['info', 'path sockets: SO_MARK fast path off (SPLITWAN_NATIVE=off): using source-port paths (ip rule sport)'],
        ['info', 'proxy original destination: SO_ORIGINAL_DST fast path off (SPLITWAN_NATIVE=off): using conntrack -L per connection'],
        ['info', 'resolver UDP: recvmmsg fast path off (SPLITWAN_NATIVE=off): using node:dgram'],
      ]);
    } finally {
      if (before === undefined) delete process.env.SPLITWAN_NATIVE;
      else process.env.SPLITWAN_NATIVE = before;
    }
  });
});

describe('SO_ORIGINAL_DST, asked at start', () => {
  // A kernel answers ENOENT for a socket with no conntrack entry; qemu-user
  // does not know the option (ENOPROTOOPT): the proxy would fail every
  // connection on it, so conntrack takes over, said once.
  it('kept where the kernel answers the option, conntrack with the reason where it is unknown', async () => {
    const { originalDstFor } = await import('../../daemon/sockets-linux.js');
    const log = recorder();
    const dst = originalDstFor({ run: () => Promise.reject(new Error('not run here')) }, { logger: log, notes: new FallbackNotes() });
    const off = nativeUnavailable();
    if (off !== null) {
      console.log(`[test] SKIPPED the SO_ORIGINAL_DST probe: ${off}`);
      expect(dst.name).not.toBe('originalDst');
      return;
    }
    if (process.env.SPLITWAN_ARCH_POOL === 'emulated') {
      expect(dst.name).not.toBe('originalDst');
      expect(log.lines.map((l) => l.msg)).toEqual(['proxy original destination: SO_ORIGINAL_DST fast path off (getsockopt(SO_ORIGINAL_DST): ENOPROTOOPT): using conntrack -L per connection']);
      return;
    }
    expect(dst.name).toBe('originalDst');
    expect(log.lines).toEqual([]);
  });
});
