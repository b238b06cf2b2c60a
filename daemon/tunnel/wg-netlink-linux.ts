// Kernel WireGuard links read over generic netlink in this process (the
// daemon's network namespace), instead of `wg show IF dump` spawned per
// tunnel for every handshake probe (issue 17: the processes were a third of
// the daemon's CPU on a router). wg-netlink.ts encodes and decodes; this
// module owns the socket.
import { GenlSocket } from '../../sys/genetlink-linux.js';
import { NetlinkError } from '../../sys/netlink.js';
import { constants } from 'node:os';
import type { WgPeerInfo } from '../os-parse.js';
import { WG_GENL_NAME, decodeGetDevice, encodeGetDevice } from './wg-netlink.js';

/** What LinuxTunnels needs of a kernel link: its peers (throws when they cannot be read). */
export interface KernelWgReader {
  peers(ifname: string): Promise<WgPeerInfo[]>;
  close(): void;
}

/** A dump that changed under it (a peer added meanwhile) is asked again, this many times in all. */
const DUMP_TRIES = 3;

export class WgNetlink implements KernelWgReader {
  private constructor(
    private sock: GenlSocket,
    private readonly familyId: number,
  ) {}

  /**
   * The reader; throws, saying why, when generic netlink cannot be used:
   * no native code (SPLITWAN_NATIVE=off, no koffi, no C library), the socket
   * refused, or no "wireguard" family (the module is not loaded).
   */
  static open(): WgNetlink {
    const sock = GenlSocket.open();
    try {
      const f = sock.family(WG_GENL_NAME);
      if (f === null) throw new NetlinkError(`the kernel has no generic netlink family "${WG_GENL_NAME}" (no WireGuard module loaded)`);
      return new WgNetlink(sock, f.id);
    } catch (e) {
      sock.close();
      throw e;
    }
  }

  // async: whatever the socket throws reaches the caller as a rejection.
  async peers(ifname: string): Promise<WgPeerInfo[]> {
    for (let i = 1; ; i++) {
      try {
        // A request that failed half-way (a socket error, an answer too large) left the socket unusable.
        if (this.sock.broken) {
          this.sock.close();
          this.sock = GenlSocket.open();
        }
        // The answer holds the private key: its chunks are zeroed once decoded.
        const { chunks, seq } = this.sock.request((s, w) => encodeGetDevice(this.familyId, ifname, s, w), { dump: true, wipe: true });
        try {
          return decodeGetDevice(chunks, seq, this.familyId).peers;
        } finally {
          for (const c of chunks) c.fill(0);
        }
      } catch (e) {
        const changed = e instanceof NetlinkError && e.errno === constants.errno.EINTR;
        if (changed && i < DUMP_TRIES) continue;
        throw e instanceof NetlinkError ? new NetlinkError(`${ifname}: ${e.message.replace(/^netlink: /, '')}`, e.errno) : e;
      }
    }
  }

  close(): void {
    this.sock.close();
  }
}
