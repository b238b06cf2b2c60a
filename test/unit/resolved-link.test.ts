// Which link the systemd-resolved takeover gets (daemon/resolved-link-linux.ts,
// dnsLinkFor): the TUN device where native code runs, else the link made with
// ip, the reason said once. The links themselves: test/integration/resolved-link.test.ts
// (in a namespace), beside a real resolved: test/lab/resolved.test.ts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { existsSync } from 'node:fs';
import { dnsLinkFor, IpDnsLink, TunDnsLink, tunUsable } from '../../daemon/resolved-link-linux.js';
import { FallbackNotes } from '../../sys/native-fallback.js';
import { recordingLogger } from '../helpers/fake-deps.js';
import { nativeUnavailable } from '../helpers/native.js';

const runner = { run: () => Promise.reject(new Error('nothing is run by the choice')) };
const KOFFI_MISSING = Object.assign(new Error('koffi does not load on linux-mips: Cannot find the native Koffi module'), { code: 'SPLITWAN_NATIVE_KOFFI' });
const notesOf = (log: ReturnType<typeof recordingLogger>) => log.lines.map((l) => [l.level, l.msg]);

describe.skipIf(process.platform !== 'linux')('the takeover\'s link: TUN, or made with ip without native code', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('native code runs: the TUN device, nothing said (the probe only loads; no device is made)', () => {
    vi.stubEnv('SPLITWAN_NATIVE', '');
    const log = recordingLogger();
    let probed = 0;
    const link = dnsLinkFor({ runner, logger: log, report: { logger: log, notes: new FallbackNotes() }, usable: () => void probed++ });
    expect(link).toBeInstanceOf(TunDnsLink);
    expect(probed).toBe(1);
    expect(log.lines).toEqual([]);
  });

  it('the real probe: passes where koffi loads and the kernel has TUN; under SPLITWAN_NATIVE=off it throws koffi\'s reason', () => {
    if (nativeUnavailable() === null && existsSync('/dev/net/tun')) expect(() => tunUsable()).not.toThrow();
    else expect(() => tunUsable()).toThrow(/SPLITWAN_NATIVE=off|koffi|C library|\/dev\/net\/tun/);
  });

  it('SPLITWAN_NATIVE=off: the link made with ip, said once as chosen (info), the probe never called', () => {
    vi.stubEnv('SPLITWAN_NATIVE', 'off');
    const log = recordingLogger();
    const notes = new FallbackNotes();
    const usable = () => {
      throw new Error('must not be probed: native code is off');
    };
    expect(dnsLinkFor({ runner, logger: log, report: { logger: log, notes }, usable })).toBeInstanceOf(IpDnsLink);
    expect(dnsLinkFor({ runner, logger: log, report: { logger: log, notes }, usable })).toBeInstanceOf(IpDnsLink);
    expect(notesOf(log)).toEqual([
      ['info', 'systemd-resolved link: a TUN device held open fast path off (SPLITWAN_NATIVE=off): using an ifb (else dummy) link made with ip, which a crash leaves until the next start or `splitwan cleanup`'],
    ]);
  });

  it('koffi or the C library does not load, or no /dev/net/tun: the link made with ip, the reason said once (warn)', () => {
    vi.stubEnv('SPLITWAN_NATIVE', '');
    const log = recordingLogger();
    const notes = new FallbackNotes();
    for (const why of [KOFFI_MISSING, new Error('no /dev/net/tun (a kernel without TUN, or a container without the device)')]) {
      expect(dnsLinkFor({ runner, logger: log, report: { logger: log, notes }, usable: () => { throw why; } })).toBeInstanceOf(IpDnsLink);
    }
    expect(notesOf(log)).toEqual([['warn', `systemd-resolved link: a TUN device held open fast path off (${KOFFI_MISSING.message}): using an ifb (else dummy) link made with ip, which a crash leaves until the next start or \`splitwan cleanup\``]]);
  });

  it('cleanup asks without a logger: nothing said, and a later takeover still says it', () => {
    vi.stubEnv('SPLITWAN_NATIVE', 'off');
    const log = recordingLogger();
    const notes = new FallbackNotes();
    expect(dnsLinkFor({ runner, logger: log, report: { notes } })).toBeInstanceOf(IpDnsLink);
    expect(log.lines).toEqual([]);
    dnsLinkFor({ runner, logger: log, report: { logger: log, notes } });
    expect(log.lines).toHaveLength(1);
  });

  it('either refuses a name longer than an interface name can be', () => {
    vi.stubEnv('SPLITWAN_NATIVE', 'off');
    expect(() => new IpDnsLink({ runner, logger: recordingLogger(), ifname: 'splitwan-dns-0123' })).toThrow(/longer than 15 bytes/);
    expect(() => new TunDnsLink({ runner, logger: recordingLogger(), ifname: 'splitwan-dns-0123' })).toThrow(/longer than 15 bytes/);
  });
});
