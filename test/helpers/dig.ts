// dig as a client in tests: run with an argv array (no shell) against a
// loopback port, and its printed answer read back into the fields a check
// needs (header bits, counts, the OPT pseudosection and its options, records,
// size). dig prints what it received; nothing here re-encodes it.
import { spawn, spawnSync } from 'node:child_process';
import { budget } from './emulation.js';

export const haveDig = spawnSync('dig', ['-v']).status === 0;

export interface DigRecord {
  name: string;
  ttl: number;
  class: string;
  type: string;
  data: string;
}

export interface DigAnswer {
  opcode: string;
  /** NOERROR, NXDOMAIN, BADVERS... */
  status: string;
  id: number;
  /** Header bits dig names: qr aa tc rd ra ad cd. */
  flags: string[];
  /** The reserved header bit (Z), as dig shows it ("MBZ: 0x4"); 0 when clear. */
  headerMbz: number;
  counts: { query: number; answer: number; authority: number; additional: number };
  /** The OPT pseudosection, or null when the answer had none. */
  edns: {
    version: number;
    /** Defined flags dig names (do). */
    flags: string[];
    /** Undefined EDNS flag bits the answer set ("MBZ: 0x0080"); 0 when none. */
    mbz: number;
    udp: number;
    /** The options, as dig labels them: NSID, COOKIE, EXPIRE, CLIENT-SUBNET, OPT=100... */
    options: string[];
  } | null;
  question: { name: string; class: string; type: string } | null;
  answer: DigRecord[];
  authority: DigRecord[];
  /** Bytes received (";; MSG SIZE  rcvd: N"). */
  size: number;
  /** dig got TC=1 over UDP and asked again over TCP. */
  retriedTcp: boolean;
  /** The answer shown came over TCP. */
  tcp: boolean;
  out: string;
}

export function parseDig(out: string): DigAnswer {
  const header = /->>HEADER<<- opcode: (\w+), status: ([A-Z0-9]+), id: (\d+)/.exec(out);
  if (!header) throw new Error(`no header in dig output:\n${out}`);
  const flagLine = /;; flags:([a-z ]*);(?: MBZ: (0x[0-9a-f]+);)? QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)/.exec(out);
  if (!flagLine) throw new Error(`no flags line in dig output:\n${out}`);
  const e = /; EDNS: version: (\d+), flags:([a-z ]*);(?: MBZ: (0x[0-9a-f]+),)? udp: (\d+)/.exec(out);
  const sections: Record<string, string[]> = {};
  let current: string | null = null;
  for (const line of out.split('\n')) {
    const s = /^;; ([A-Z]+) (?:SECTION|PSEUDOSECTION):$/.exec(line);
    if (s) {
      current = s[1]!;
      sections[current] = [];
    } else if (line.trim() === '') current = null;
    else if (current !== null) sections[current]!.push(line);
  }
  const rec = (l: string): DigRecord => {
    const [name, ttl, cls, type, ...data] = l.split(/\s+/);
    return { name: name!, ttl: Number(ttl), class: cls!, type: type!, data: data.join(' ') };
  };
  const q = sections.QUESTION?.[0]?.replace(/^;/, '').split(/\s+/);
  const options = (sections.OPT ?? [])
    .filter((l) => !l.startsWith('; EDNS:'))
    .map((l) => /^; ([A-Z0-9=-]+)/.exec(l)?.[1])
    .filter((o): o is string => o !== undefined);
  return {
    opcode: header[1]!,
    status: header[2]!,
    id: Number(header[3]),
    flags: flagLine[1]!.trim().split(/\s+/).filter(Boolean),
    headerMbz: flagLine[2] ? parseInt(flagLine[2], 16) : 0,
    counts: { query: Number(flagLine[3]), answer: Number(flagLine[4]), authority: Number(flagLine[5]), additional: Number(flagLine[6]) },
    edns: e ? { version: Number(e[1]), flags: e[2]!.trim().split(/\s+/).filter(Boolean), mbz: e[3] ? parseInt(e[3], 16) : 0, udp: Number(e[4]), options } : null,
    question: q ? { name: q[0]!, class: q[1]!, type: q[2]! } : null,
    answer: (sections.ANSWER ?? []).map(rec),
    authority: (sections.AUTHORITY ?? []).map(rec),
    size: Number(/;; MSG SIZE {2}rcvd: (\d+)/.exec(out)?.[1] ?? NaN),
    retriedTcp: out.includes('Truncated, retrying in TCP mode'),
    tcp: /;; SERVER: .*\(TCP\)/.test(out),
    out,
  };
}

/** Runs dig against 127.0.0.1:port (one try, 2 s, stretched in an emulated Node; from `bind` when given); resolves with what it printed, answered or not. */
export function digRun(port: number, args: readonly string[], o: { bind?: string } = {}): Promise<{ out: string; code: number | null; argv: string[] }> {
  const argv = ['@127.0.0.1', '-p', String(port), '+tries=1', `+time=${budget(2000) / 1000}`, ...(o.bind ? ['-b', o.bind] : []), ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('dig', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ out, code, argv }));
  });
}

/** digRun's output; rejects when dig got no answer. */
export async function digOutput(port: number, args: readonly string[], o: { bind?: string } = {}): Promise<string> {
  const { out, code, argv } = await digRun(port, args, o);
  if (!out.includes('Got answer:')) throw new Error(`dig ${argv.join(' ')} got no answer (exit ${code}):\n${out}`);
  return out;
}

/** dig's one answer, parsed; rejects when there was none. */
export async function dig(port: number, args: readonly string[], o: { bind?: string } = {}): Promise<DigAnswer> {
  return parseDig(await digOutput(port, args, o));
}
