// The tunnel manager's contract: one WireGuard interface per gateway, driven in
// desired-state style (tailscale's Router.Set). The daemon computes the list of
// TunnelSpecs from the config and hands the whole list to set() after every
// change, at start, after a reload and from the health monitor; set() makes the
// system match and does nothing when it already does.
//
// Implementations: tunnels-linux.ts (kernel `wireguard` links, else
// wireguard-go) and tunnels-fake.ts (a state model for unit tests).

/** One tunnel as it should be. Holds a secret: never log a TunnelSpec as is (see redactSpec). */
export interface TunnelSpec {
  /** The gateway's name, for logs. */
  name: string;
  /** The interface, <= 15 characters (`swg-<name>`). Tunnels are identified by it. */
  ifname: string;
  /** Base64, 32 bytes. Secret: goes through a 0600 file, never argv or a log. */
  privateKey: string;
  /** CIDRs of this side, e.g. 10.64.0.2/32, fd64::2/128. */
  addresses: string[];
  mtu: number;
  /** WireGuard's own UDP carries this mark (MARK_BREAKOUT), so it leaves via breakout. */
  fwmark: number;
  peer: {
    publicKey: string;
    /** Secret, like privateKey. */
    presharedKey?: string;
    /** An IP address: names are resolved before set(). */
    endpoint: { host: string; port: number };
    allowedIPs: string[];
    /** Seconds; absent or 0: off. */
    persistentKeepalive?: number;
  };
}

/** What a tunnel looks like now. */
export interface TunnelStatus {
  ifname: string;
  /** The link exists and is administratively up (and, for wireguard-go, its process runs). */
  up: boolean;
  /** The wireguard-go process; null for a kernel link or when none runs. */
  pid: number | null;
  /** Milliseconds since the epoch; null when there was never a handshake. */
  latestHandshake: number | null;
  rxBytes: number;
  txBytes: number;
  /** The peer endpoint WireGuard uses now (`1.2.3.4:51820`, `[fd00::1]:51820`); it roams. */
  endpoint: string | null;
}

export interface TunnelBackend {
  /**
   * Makes the tunnels match `specs`: creates what is missing, reconfigures what
   * changed, stops what is gone, repairs what broke (a deleted link, a dead
   * wireguard-go, a roamed endpoint seen by status()). Idempotent: the same
   * specs twice run nothing the second time.
   */
  set(specs: TunnelSpec[]): Promise<void>;
  /** One entry per tunnel of the last set(), in that order. */
  status(): Promise<TunnelStatus[]>;
  /** Stops every wireguard-go it started and deletes its links. Idempotent. */
  close(): Promise<void>;
  /**
   * The network changed (another link, another address): each tunnel's peer
   * endpoint is set again as it is. wireguard-go remembers the local address
   * it last sent from and keeps sending from it, into nowhere, until its 15 s
   * handshake timeout clears it; setting the endpoint clears it now.
   */
  rebind?(): Promise<void>;
}
