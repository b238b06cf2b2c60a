// Every address of a name through the breakout's resolvers (A and AAAA), for
// the probe and for what a portal window opens. The forwarder's sockets are
// splitwan's own, on the breakout path, so this works with the kill switch on.
import { randomInt } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import type { Upstream } from '../../config/types.js';
import { readQuestion, type Forwarder } from '../../dns/forwarder.js';
import { responseInfo } from '../../dns/wire.js';

export function breakoutAddresses(forwarder: () => Pick<Forwarder, 'forward'>, upstreams: () => readonly Upstream[]): (name: string) => Promise<string[]> {
  return async (name) => {
    const ask = async (type: 'A' | 'AAAA'): Promise<string[]> => {
      const query = dnsPacket.encode({ type: 'query', id: randomInt(0, 0x10000), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
      const q = readQuestion(query);
      if (q === null) throw new Error(`not a name: ${name}`);
      const resp = await forwarder().forward(query, q, upstreams(), 'breakout').catch(() => null);
      return (resp === null ? null : responseInfo(resp))?.addresses ?? [];
    };
    const [a, aaaa] = await Promise.all([ask('A'), ask('AAAA')]);
    return [...a, ...aaaa];
  };
}
