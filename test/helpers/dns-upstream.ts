// A tiny DNS upstream on 127.0.0.1 for server tests: UDP and TCP on one port,
// answers any well-formed question by echoing it (raw bytes: odd names, types
// and classes come back exactly as asked, so the forwarder always matches the
// answer), with records from `records` for the names a test cares about and
// an optional delay per name (a slow upstream).
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface TinyUpstream {
  port: number;
  /** Questions received (lower-cased names), UDP and TCP. */
  asked: string[];
  close(): Promise<void>;
}

export interface TinyUpstreamOptions {
  /** Records for a name (lower case, no trailing dot); null/undefined: an empty NOERROR answer. */
  records?: (qname: string, qtype: number) => dnsPacket.Answer[] | null | undefined;
  /** Milliseconds to wait before answering this name. */
  delayMs?: (qname: string) => number;
  /** A promise to wait for before answering this name (the test releases it); undefined: answer now. */
  hold?: (qname: string) => Promise<void> | undefined;
}

/** The question of `msg` as raw bytes and lower-cased text; null when it has none we can read. */
function question(msg: Buffer): { raw: Buffer; name: string; qtype: number } | null {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return null;
  let o = 12;
  const labels: string[] = [];
  for (;;) {
    if (o >= msg.length) return null;
    const len = msg[o]!;
    if (len === 0) break;
    if (len > 63 || o + 1 + len > msg.length) return null;
    labels.push(msg.toString('latin1', o + 1, o + 1 + len).toLowerCase());
    o += 1 + len;
  }
  o += 1;
  if (o + 4 > msg.length) return null;
  return { raw: msg.subarray(12, o + 4), name: labels.join('.'), qtype: msg.readUInt16BE(o) };
}

function respond(msg: Buffer, o: TinyUpstreamOptions): Buffer | null {
  const q = question(msg);
  if (q === null) return null;
  const records = o.records?.(q.name, q.qtype) ?? [];
  const head = Buffer.alloc(12);
  head.writeUInt16BE(msg.readUInt16BE(0), 0);
  head.writeUInt16BE(0x8000 | (msg.readUInt16BE(2) & 0x0100) | 0x0080, 2); // QR, RD copied, RA
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(records.length, 6);
  if (records.length === 0) return Buffer.concat([head, q.raw]);
  // The records, encoded by dns-packet in a throwaway message whose header and question we cut off.
  const tmp = dnsPacket.encode({ type: 'response', id: 0, questions: [{ name: 'x', type: 'A', class: 'IN' }], answers: records });
  return Buffer.concat([head, q.raw, tmp.subarray(12 + 3 + 4)]);
}

export async function startTinyUpstream(o: TinyUpstreamOptions = {}): Promise<TinyUpstream> {
  const asked: string[] = [];
  const later = (msg: Buffer, send: (b: Buffer) => void): void => {
    const q = question(msg);
    if (q !== null) asked.push(q.name);
    const out = respond(msg, o);
    if (out === null) return;
    const delay = q === null ? 0 : (o.delayMs?.(q.name) ?? 0);
    const held = q === null ? undefined : o.hold?.(q.name);
    if (held !== undefined) void held.then(() => send(out));
    else if (delay > 0) setTimeout(() => send(out), delay).unref();
    else send(out);
  };
  const conns = new Set<net.Socket>();
  const tcp = net.createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    let buf = Buffer.alloc(0);
    c.on('error', () => c.destroy());
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        later(Buffer.from(msg), (b) => {
          if (c.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(b.length);
          c.write(Buffer.concat([len, b]));
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => later(msg, (b) => udp.send(b, rinfo.port, rinfo.address, () => {})));
  udp.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, '127.0.0.1', () => resolve());
    });
  } catch (e) {
    await new Promise<void>((r) => tcp.close(() => r()));
    throw e;
  }
  return {
    port,
    asked,
    close: async () => {
      udp.close();
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

/**
 * A host-mode config whose every path (breakout and the one gateway's tunnel)
 * resolves through 127.0.0.1:`port`, for startResolver. `extra`: more YAML
 * lines (rules:, dns:...). Returns the text and the wg-quick file it names.
 */
export function loopbackConfig(port: number, extra: readonly string[] = []): { configYaml: string; files: Record<string, string> } {
  const key = (): string => randomBytes(32).toString('base64');
  const wg = ['[Interface]', `PrivateKey = ${key()}`, 'Address = 10.64.0.2/32', '', '[Peer]', `PublicKey = ${key()}`, 'Endpoint = 192.0.2.10:51820', 'AllowedIPs = 0.0.0.0/0', ''].join('\n');
  const configYaml = [
    'mode: host',
    'breakout:',
    `  dns: ["127.0.0.1:${port}"]`,
    'tunnel:',
    `  dns: ["127.0.0.1:${port}"]`,
    '  gateways:',
    '    - name: gw1',
    '      config: gw1.conf',
    ...extra,
    '',
  ].join('\n');
  return { configYaml, files: { 'gw1.conf': wg } };
}
