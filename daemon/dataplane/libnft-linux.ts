// nft commands run in-process through libnftables (the library the `nft`
// binary is built on, as dnsmasq's --nftset uses it), called through koffi
// on libuv's thread pool so the event loop never waits for netlink.
//
// Why not `nft -i`: it keeps every line in a libedit history whose cost
// grows with the session (0.2 ms a command fresh, 1 ms after 100k) and
// writes it to $HOME/.nft.history; replacing the process costs a table load
// (~90 ms with 100k tagged addresses). Measured by `bench dns`.
//
// Commands run one at a time (a context is not thread-safe), in the order
// given, each one transaction; errors come from the context's error buffer
// as `nft` prints them. The library acts in the network namespace of this
// process: the daemon's. When libnftables cannot be loaded, the daemon falls
// back to NftSession (`nft -i`).
//
// Set elements (the tagger's every DNS miss) skip libnftables: they go as one
// nfnetlink batch straight to the kernel (NetlinkElements below). libnftables
// 1.0.6 rebuilds its cache before every command, since each of our commits
// bumps the ruleset generation: dumps of every table, chain, set and object
// in the namespace, plus four 8192-bucket hash tables per table and one for
// the cache filter, each allocated and initialised (128 KiB apiece, ~1 MiB a
// command with two tables: perf shows those loops at ~30% of the library's
// time). That is ~110 us of CPU an `add element` of one address called
// inline, ~150 us from libuv's pool, whatever the set holds; the same as a
// batch costs 15-50 us (`bench nft-tag`).
import { koffi, loadKoffi, type KoffiFunction } from '../../sys/koffi-linux.js';
import { constants } from 'node:os';
import { HOST_LE } from '../../sys/c-abi.js';
import { NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_NETFILTER, NLERR, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkWriter, SOL_NETLINK, ints, nlErrorRequest, nlErrorText, nlMessages } from '../../sys/netlink.js';
import { netlinkLibc, type NetlinkLibc } from '../../sys/genetlink-linux.js';
import { parseIp } from '../../lib/ip.js';
import type { Logger } from '../../lib/logger.js';
import { processNotes, reasonOf, type FallbackNotes } from '../../sys/native-fallback.js';
import { NftError, NftSession, renderElementChanges, type ElementAdd, type ElementChanges, type NftExec } from './nft-session-linux.js';
import { AF_NETLINK, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_RAW, SOL_SOCKET, SO_SNDBUF, SO_SNDBUFFORCE } from '../../sys/linux-abi.js';

interface Lib {
  ctxNew: KoffiFunction;
  bufferError: KoffiFunction;
  bufferOutput: KoffiFunction;
  getError: KoffiFunction;
  run: KoffiFunction;
  free: KoffiFunction;
}

let loaded: Lib | null | undefined;
/** Why the library did not load (the loader's own words: not installed, a missing symbol...). */
let loadFailure = '';

/** The library's functions, or null when libnftables.so.1 cannot be loaded (loadFailure says why). */
function lib(): Lib | null {
  if (loaded !== undefined) return loaded;
  try {
    const l = loadKoffi().load('libnftables.so.1');
    loaded = {
      ctxNew: l.func('void *nft_ctx_new(uint32_t flags)'),
      bufferError: l.func('int nft_ctx_buffer_error(void *ctx)'),
      bufferOutput: l.func('int nft_ctx_buffer_output(void *ctx)'),
      getError: l.func('const char *nft_ctx_get_error_buffer(void *ctx)'),
      run: l.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)'),
      free: l.func('void nft_ctx_free(void *ctx)'),
    };
  } catch (e) {
    loaded = null;
    loadFailure = reasonOf(e);
  }
  return loaded;
}

export function libnftAvailable(): boolean {
  return lib() !== null;
}

/** Why libnftables cannot be used here, or null when it can. */
export function libnftProblem(): string | null {
  return lib() === null ? loadFailure : null;
}

/** `Error: …` lines of nft's error text, without the echoed command and caret lines. */
export function nftErrors(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('Error:'))
    .map((l) => l.slice(7));
}

export class LibNft implements NftExec {
  private readonly l: Lib;
  private ctx: unknown;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  /** The element fast path; null when its socket could not be opened (then elements are lines). */
  private readonly netlink: NetlinkElements | null;
  /** Commands run (for benchmarks and status). */
  commands = 0;

  constructor(
    private readonly logger: Logger,
    o: { netlink?: boolean; notes?: FallbackNotes } = {},
  ) {
    const l = lib();
    if (l === null) throw new Error('libnftables.so.1 is not installed');
    this.l = l;
    this.ctx = l.ctxNew(0);
    if (!this.ctx) throw new Error('nft_ctx_new failed');
    // Buffered: nothing is printed on the daemon's stdout/stderr; errors are read back.
    l.bufferOutput(this.ctx);
    l.bufferError(this.ctx);
    // SPLITWAN_NFT_NETLINK=0: elements as nft lines too (to compare, or should a kernel refuse the
    // batches); =async: batches sent from libuv's pool (see NetlinkElements).
    const mode = process.env.SPLITWAN_NFT_NETLINK;
    const notes = o.notes ?? processNotes;
    if (mode === '0') notes.note(logger, NETLINK_PATH, 'SPLITWAN_NFT_NETLINK=0', NETLINK_INSTEAD, true);
    this.netlink = o.netlink === false || mode === '0' ? null : NetlinkElements.open(logger, { sync: mode !== 'async', notes });
  }

  exec(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('nft session closed'));
    if (line.includes('\n')) return Promise.reject(new TypeError('one line is one transaction: no newlines'));
    return this.enqueue(() => this.runOne(line));
  }

  /** Element changes as one netlink batch, in order with exec()'s lines; as a line when the socket is missing. */
  elements(changes: ElementChanges): Promise<void> {
    if (this.closed) return Promise.reject(new Error('nft session closed'));
    const n = this.netlink;
    if (n === null) return this.exec(renderElementChanges(changes));
    return this.enqueue(() => {
      this.commands++;
      return n.apply(changes);
    });
  }

  private enqueue(f: () => Promise<void>): Promise<void> {
    const run = this.chain.then(f);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private runOne(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('nft session closed'));
    this.commands++;
    return new Promise<void>((resolve, reject) => {
      this.l.run.async(this.ctx, line, (err: unknown, rc: number) => {
        if (err) return reject(err instanceof Error ? err : new Error(String(err)));
        if (rc === 0) return resolve();
        // The error buffer holds this command's messages: commands never overlap.
        const text = String(this.l.getError(this.ctx) ?? '');
        const errs = nftErrors(text);
        reject(new NftError(line, errs.length ? errs : [text.trim() || `failed (${rc})`]));
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The context is freed once the command in flight (if any) has returned.
    void this.chain.then(() => {
      this.l.free(this.ctx);
      this.ctx = null;
      this.netlink?.close();
      this.logger.debug({ commands: this.commands }, 'libnftables context closed');
    });
  }
}

// --- Set elements over nfnetlink -------------------------------------------
// Constants from linux/netfilter/nfnetlink.h and nf_tables.h (netlink.h's: sys/netlink.ts).
const { EAGAIN, EINTR } = constants.errno;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NFPROTO_INET = 1;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_SET_ELEM_EXPIRATION = 5;
const NFTA_DATA_VALUE = 1;
/**
 * Elements per NEWSETELEM message: its element list is one attribute, whose
 * length is 16 bits (~40 bytes an IPv4 element); libnftnl splits the same way.
 */
const ELEMENTS_PER_MESSAGE = 1024;

/** An IPv4 or IPv6 address in network order (lib/ip.ts parses it); null if `s` is neither, or has a zone. */
export function addressBytes(s: string): Buffer | null {
  const ip = s.includes('%') ? null : parseIp(s);
  if (ip === null) return null;
  if (ip.family === 4) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(ip.w[3]);
    return b;
  }
  const b = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) b.writeUInt32BE(ip.w[i]!, 4 * i);
  return b;
}

/** A dotted-quad IPv4 address as a number; -1 for anything else (left to addressBytes). */
function ipv4Value(s: string): number {
  let v = 0;
  let part = -1;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (part < 0 || ++dots > 3) return -1;
      v = v * 256 + part;
      part = -1;
    } else if (c >= 0x30 && c <= 0x39) {
      // No leading zeros (parseIp refuses them too: 010 is octal somewhere).
      if (part === 0) return -1;
      part = (part < 0 ? 0 : part * 10) + (c - 0x30);
      if (part > 255) return -1;
    } else return -1;
  }
  return dots === 3 && part >= 0 ? v * 256 + part : -1;
}

/**
 * nfnetlink messages: nlmsghdr and nfgenmsg, then attributes (sys/netlink.ts
 * writes them: headers in the machine's byte order, nfnetlink's own payloads
 * big-endian). `le`: the byte order written (tests write both).
 */
export class NlWriter extends NetlinkWriter {
  /** nlmsghdr + nfgenmsg; returns the offset, for end(). */
  message(type: number, flags: number, seq: number, family: number, resId: number): number {
    const at = this.header(type, flags, seq);
    this.nfgen(family, resId);
    return at;
  }
  /** NUL-terminated names (tables, sets): each name's bytes made once (a few names, bounded), not per message. */
  private readonly names = new Map<string, Buffer>();
  private readonly scratch8 = Buffer.alloc(8);
  private readonly scratch4 = Buffer.alloc(4);
  override string(type: number, s: string): void {
    let b = this.names.get(s);
    if (b === undefined) {
      if (this.names.size >= 256) this.names.clear();
      this.names.set(s, (b = Buffer.from(`${s}\0`)));
    }
    this.attr(type, b);
  }
  /** Big-endian 64 bits from two 32-bit halves: no BigInt and no Buffer per element (timeouts are far below 2^53). */
  override be64(type: number, n: number): void {
    this.scratch8.writeUInt32BE(Math.floor(n / 0x100000000), 0);
    this.scratch8.writeUInt32BE(n >>> 0, 4);
    this.attr(type, this.scratch8);
  }
  /** An address as an attribute (network order), without a Buffer of its own for IPv4; false if `s` is not an address. */
  address(type: number, s: string): boolean {
    const v4 = ipv4Value(s);
    if (v4 >= 0) {
      this.scratch4.writeUInt32BE(v4, 0);
      this.attr(type, this.scratch4);
      return true;
    }
    const key = addressBytes(s);
    if (key === null) return false;
    this.attr(type, key);
    return true;
  }
}

/** One rendered batch: the bytes, and the sequence number of each message that will be acknowledged. */
export interface ElementBatch {
  bytes: Buffer;
  acked: number[];
  /** What the message of each sequence number (all of the batch's) does, for errors: worded only when asked. */
  what: BatchMessages;
}

/**
 * The messages of a batch by sequence number, as nft would word them. The
 * text is made only for an error: every DNS miss sends a batch, and
 * wording each one cost a string and a join per message.
 */
export class BatchMessages {
  private readonly parts: { seq: number; op: 'add' | 'delete'; set: string; addresses: readonly string[] | readonly ElementAdd[]; from: number; to: number }[] = [];
  constructor(
    private readonly table: string,
    readonly first: number,
    /** Messages, batch begin and end included. */
    public size = 0,
  ) {}
  add(seq: number, op: 'add' | 'delete', set: string, addresses: readonly string[] | readonly ElementAdd[], from: number, to: number): void {
    this.parts.push({ seq, op, set, addresses, from, to });
  }
  has(seq: number): boolean {
    return seq >= this.first && seq < this.first + this.size;
  }
  get(seq: number): string | undefined {
    if (!this.has(seq)) return undefined;
    if (seq === this.first) return 'batch begin';
    if (seq === this.first + this.size - 1) return 'batch end';
    const p = this.parts.find((x) => x.seq === seq);
    if (p === undefined) return undefined;
    const list = p.addresses.slice(p.from, p.to).map((a) => (typeof a === 'string' ? a : a.address));
    return `${p.op} element inet ${this.table} ${p.set} { ${list.join(', ')} }`;
  }
}

/**
 * `changes` as one nfnetlink batch (what `nft` sends for the same lines,
 * less its cache queries): BEGIN, a DELSETELEM per set, a NEWSETELEM per set,
 * END; each element message asks for an acknowledgement. Throws NftError for
 * an address that is not one.
 */
export function encodeElementBatch(changes: ElementChanges, firstSeq: number, w: NlWriter = new NlWriter()): ElementBatch {
  w.len = 0;
  let seq = firstSeq;
  const acked: number[] = [];
  const what = new BatchMessages(changes.table, firstSeq);
  const subsys = NFNL_SUBSYS_NFTABLES << 8;
  w.end(w.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES));
  const one = (op: 'add' | 'delete', set: string, elements: readonly string[] | readonly ElementAdd[]): void => {
    for (let k = 0; k < elements.length; k += ELEMENTS_PER_MESSAGE) {
      const s = seq++;
      const end = Math.min(elements.length, k + ELEMENTS_PER_MESSAGE);
      acked.push(s);
      what.add(s, op, set, elements, k, end);
      const flags = op === 'add' ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE : NLM_F_REQUEST | NLM_F_ACK;
      const m = w.message(subsys | (op === 'add' ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM), flags, s, NFPROTO_INET, 0);
      w.string(NFTA_SET_ELEM_LIST_TABLE, changes.table);
      w.string(NFTA_SET_ELEM_LIST_SET, set);
      const list = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
      for (let i = k; i < end; i++) {
        const e = elements[i]!;
        const address = typeof e === 'string' ? e : e.address;
        const el = w.nest(NFTA_LIST_ELEM);
        const k0 = w.nest(NFTA_SET_ELEM_KEY);
        if (!w.address(NFTA_DATA_VALUE, address)) {
          what.size = seq - firstSeq;
          throw new NftError(what.get(s)!, [`Could not process rule: ${address} is not an address`]);
        }
        w.nestEnd(k0);
        if (typeof e !== 'string') {
          const ms = e.timeoutS * 1000;
          w.be64(NFTA_SET_ELEM_TIMEOUT, ms);
          // The expiry too: Linux 6.12+ refreshes an element already there only when told (see renderElementChanges).
          w.be64(NFTA_SET_ELEM_EXPIRATION, ms);
        }
        w.nestEnd(el);
      }
      w.nestEnd(list);
      w.end(m);
    }
  };
  for (const [set, as] of changes.deletes) if (as.length) one('delete', set, as);
  for (const [set, es] of changes.adds) if (es.length) one('add', set, es);
  w.end(w.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES));
  what.size = seq - firstSeq;
  return { bytes: w.buf.subarray(0, w.len), acked, what };
}

/** The acknowledgements in `buf` (NLMSG_ERROR messages, in byte order `le`): sequence number, error (0 or -errno) and the kernel's message, if any. A malformed message ends the reading: those before it count. */
export function parseAcks(buf: Buffer, le: boolean = HOST_LE): { seq: number; error: number; message?: string }[] {
  const out: { seq: number; error: number; message?: string }[] = [];
  for (const m of nlMessages(buf, le, { upToBad: true })) {
    const req = m.type === NLMSG_ERROR ? nlErrorRequest(m, le) : null;
    if (req === null) continue;
    const ack: { seq: number; error: number; message?: string } = { seq: req.seq, error: ints(le).i32(m.payload, NLERR.offset.error) };
    const said = nlErrorText(m, le);
    if (said !== null) ack.message = said;
    out.push(ack);
  }
  return out;
}

type Libc = NetlinkLibc;

let libcLoaded: Libc | null | undefined;
let libcFailure = '';

function libc(): Libc | null {
  if (libcLoaded !== undefined) return libcLoaded;
  try {
    libcLoaded = netlinkLibc();
  } catch (e) {
    libcLoaded = null;
    libcFailure = reasonOf(e);
  }
  return libcLoaded;
}

/** The tagger's element fast path, as the log names it when it is off. */
const NETLINK_PATH = 'nft set elements: netlink batches';
const NETLINK_INSTEAD = 'add element commands through libnftables (~4x the CPU a tag)';

/**
 * A NETLINK_NETFILTER socket that sends element batches. The kernel commits
 * inside send(), and the acknowledgements are then already queued: they are
 * read without blocking. Batches go one at a time, in order.
 *
 * send() runs on the main thread by default: an element batch commits in
 * ~10-20 us, and the hop to libuv's pool and back cost more than that (CPU
 * per tag 59 us from the pool, 34 us inline; the tagger's p99 at 2000
 * tags/s 2.6 ms from the pool, 0.1 ms inline: `bench nft-tag`). The price:
 * while another process commits (the daemon's own `nft -f -` of a reload),
 * the kernel holds our send until that commit is done, and the event loop
 * with it, where the answer waiting for the tag would have waited anyway.
 * `sync: false` sends from the pool instead.
 */
export class NetlinkElements {
  private readonly w = new NlWriter();
  private readonly rbuf = Buffer.alloc(64 * 1024);
  private seq = 1;
  private sndbuf = 0;
  private closed = false;
  /** One batch at a time: the writer's buffer and the acknowledgements are shared. */
  private tail: Promise<void> = Promise.resolve();

  private constructor(
    private readonly c: Libc,
    private readonly fd: number,
    private readonly sync: boolean,
  ) {}

  /** The socket, in this process's network namespace; null (said once in the log) if it cannot be had. */
  static open(logger: Logger, o: { sync?: boolean; notes?: FallbackNotes } = {}): NetlinkElements | null {
    const notes = o.notes ?? processNotes;
    const c = libc();
    if (c === null) {
      notes.note(logger, NETLINK_PATH, libcFailure, NETLINK_INSTEAD);
      return null;
    }
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER) as number;
    if (fd < 0) {
      const errno = koffi.errno();
      notes.note(logger, NETLINK_PATH, `socket(AF_NETLINK, NETLINK_NETFILTER): ${String(c.strerror(errno) ?? `errno ${errno}`)}`, NETLINK_INSTEAD);
      return null;
    }
    // Acknowledgements without a copy of the request, with the kernel's message when it has one.
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, [1], 4);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, [1], 4);
    return new NetlinkElements(c, fd, o.sync ?? true);
  }

  apply(changes: ElementChanges): Promise<void> {
    const run = this.tail.then(() => this.applyNow(changes));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private applyNow(changes: ElementChanges): Promise<void> {
    if (this.closed) return Promise.reject(new Error('netlink socket closed'));
    let batch: ElementBatch;
    try {
      batch = encodeElementBatch(changes, this.seq, this.w);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    this.seq = (this.seq + batch.what.size) % 0x7fffffff || 1;
    const bytes = batch.bytes;
    // A batch must go in one send: the socket's buffer grows to hold it (as nft does).
    if (bytes.length * 2 > this.sndbuf) {
      const want = Math.max(bytes.length * 2, 256 * 1024);
      if (this.c.setsockopt(this.fd, SOL_SOCKET, SO_SNDBUFFORCE, [want], 4) !== 0) this.c.setsockopt(this.fd, SOL_SOCKET, SO_SNDBUF, [want], 4);
      this.sndbuf = want;
    }
    return new Promise<void>((resolve, reject) => {
      const done = (sent: number, errno: number): void => {
        if (sent !== bytes.length) {
          reject(new NftError(renderElementChanges(changes), [`netlink send failed: ${sent < 0 ? this.strerror(errno) : `${sent} of ${bytes.length} bytes`}`]));
          return;
        }
        const failed = this.collect(batch);
        if (failed === null) resolve();
        else reject(new NftError(renderElementChanges(changes), failed));
      };
      if (this.sync) {
        const n = this.c.send(this.fd, bytes, bytes.length, 0) as number;
        done(n, n < 0 ? koffi.errno() : 0);
      } else {
        this.c.send.async(this.fd, bytes, bytes.length, 0, (err: unknown, n: number) => {
          // errno stays with the pool's thread: a failed send is reported without it.
          if (err) reject(err instanceof Error ? err : new Error(String(err)));
          else done(n, 0);
        });
      }
    });
  }

  /** Reads this batch's acknowledgements; null if all are clean, else nft-like error lines. */
  private collect(batch: ElementBatch): string[] | null {
    const want = new Set(batch.acked);
    const errors: string[] = [];
    while (want.size > 0) {
      const n = this.c.recv(this.fd, this.rbuf, this.rbuf.length, MSG_DONTWAIT) as number;
      if (n < 0) {
        const e = koffi.errno();
        if (e === EINTR) continue;
        // The kernel answers inside send(): nothing more is coming.
        errors.push(e === EAGAIN ? `no acknowledgement for ${want.size} of ${batch.acked.length} messages` : `netlink receive failed: ${this.strerror(e)}`);
        break;
      }
      for (const a of parseAcks(this.rbuf.subarray(0, n))) {
        // Not this batch's: a straggler of an earlier one.
        if (!batch.what.has(a.seq)) continue;
        want.delete(a.seq);
        if (a.error !== 0) {
          const text = `Could not process rule: ${this.strerror(-a.error)}${a.message ? ` (${a.message})` : ''}`;
          errors.push(`${text}: ${batch.what.get(a.seq) ?? `message ${a.seq}`}`);
        }
      }
    }
    return errors.length ? errors : null;
  }

  private strerror(errno: number): string {
    return String(this.c.strerror(errno) ?? `errno ${errno}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.c.close(this.fd);
  }
}

/** The daemon's nft: libnftables in-process, else a persistent `nft -i` (said in the log, once). */
export function openNft(logger: Logger, notes: FallbackNotes = processNotes): NftExec & { close(): void } {
  const problem = libnftProblem();
  if (problem === null) return new LibNft(logger, { notes });
  notes.note(logger, 'nft: libnftables in-process', problem, 'nft -i (slower tagging; install libnftables1)');
  return new NftSession(logger);
}
