// From a configured gateway to the tunnel the backend builds: the endpoint's
// name looked up through the breakout resolvers on the breakout path (the
// system resolver may be splitwan itself in host mode, or route through a
// tunnel that is not up yet).
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { GatewayConfig, Upstream } from '../../config/types.js';
import { readQuestion, type Forwarder } from '../../dns/forwarder.js';
import { responseInfo } from '../../dns/wire.js';
import { MARK_BREAKOUT } from '../dataplane/plan.js';
import type { TunnelSpec } from './types.js';

export const DEFAULT_MTU = 1420;

/** Looks a name up: its A records, else AAAA (a resolver as the daemon itself uses one). */
export type NameLookup = (name: string) => Promise<string>;

export function breakoutLookup(forwarder: Pick<Forwarder, 'forward'>, upstreams: () => readonly Upstream[]): NameLookup {
  return async (name) => {
    for (const type of ['A', 'AAAA'] as const) {
      const query = dnsPacket.encode({ type: 'query', id: randomInt(0, 0x10000), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
      const q = readQuestion(query);
      if (q === null) throw new Error(`not a name: ${name}`);
      const resp = await forwarder.forward(query, q, upstreams(), 'breakout').catch(() => null);
      const info = resp === null ? null : responseInfo(resp);
      const found = info?.answers.find((a) => a.type === (type === 'A' ? 1 : 28))?.data;
      if (found !== undefined) return found;
    }
    throw new Error(`cannot resolve gateway endpoint ${name} through the breakout resolvers (${upstreams().map((u) => u.text).join(', ') || 'none'})`);
  };
}

export async function tunnelSpec(g: GatewayConfig, lookup: NameLookup): Promise<TunnelSpec> {
  const wg = g.wireguard;
  const peer = wg.peers[0]!;
  return {
    name: g.name,
    ifname: g.ifname,
    privateKey: wg.privateKey,
    addresses: wg.addresses,
    mtu: wg.mtu ?? DEFAULT_MTU,
    fwmark: MARK_BREAKOUT,
    peer: {
      publicKey: peer.publicKey,
      ...(peer.presharedKey !== undefined ? { presharedKey: peer.presharedKey } : {}),
      endpoint: { host: isIP(peer.endpoint!.host) ? peer.endpoint!.host : await lookup(peer.endpoint!.host), port: peer.endpoint!.port },
      allowedIPs: peer.allowedIPs,
      ...(peer.persistentKeepalive !== undefined ? { persistentKeepalive: peer.persistentKeepalive } : {}),
    },
  };
}
