// Generic netlink's controller ("nlctrl", <linux/genetlink.h>): how a
// family's number is found from its name (CTRL_CMD_GETFAMILY), and how the
// answers to a generic netlink request are read and checked. Pure; the
// socket is sys/genetlink-linux.ts.
import { HOST_LE } from './c-abi.js';
import {
  GENLH,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NetlinkError,
  NetlinkWriter,
  ints,
  nlAttrs,
  nlErrno,
  nlErrorText,
  nlMessages,
  type NlAttr,
} from './netlink.js';
import { constants } from 'node:os';
import { errnoName } from './errno.js';

/** GENL_ID_CTRL = NLMSG_MIN_TYPE: the controller's own family number. */
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const CTRL_ATTR_VERSION = 3;
/** A family name's room, its NUL included. */
export const GENL_NAMSIZ = 16;
/** The controller's version, as libmnl's and iproute2's `genl` send it. */
const CTRL_VERSION = 1;

export interface GenlFamily {
  name: string;
  id: number;
  version: number;
}

/** CTRL_CMD_GETFAMILY for `name`; or, without a name, a dump of every family. */
export function encodeGetFamily(seq: number, name: string | null, w: NetlinkWriter = new NetlinkWriter()): Buffer {
  if (name !== null && (name.length === 0 || Buffer.byteLength(name) >= GENL_NAMSIZ)) throw new NetlinkError(`"${name}" is not a family name (1 to ${GENL_NAMSIZ - 1} bytes)`);
  w.len = 0;
  const m = w.header(GENL_ID_CTRL, NLM_F_REQUEST | (name === null ? NLM_F_DUMP : 0), seq);
  w.genl(CTRL_CMD_GETFAMILY, CTRL_VERSION);
  if (name !== null) w.string(CTRL_ATTR_FAMILY_NAME, name);
  w.end(m);
  return w.bytes();
}

/** A generic netlink message's command and attributes. */
export interface GenlMessage {
  type: number;
  cmd: number;
  attrs: NlAttr[];
}

/**
 * The answers to the request `seq` in `chunks` (each what one recv()
 * returned), checked: messages of another sequence number are skipped (a
 * straggler of an earlier request); NLMSG_ERROR with an errno, a NLMSG_DONE
 * carrying one, and a dump whose content changed under it (NLM_F_DUMP_INTR,
 * errno EINTR: ask again) throw NetlinkError. `complete`: whether the last
 * answer (NLMSG_DONE, an acknowledgement, or the one message of a request
 * without NLM_F_DUMP when `dump` is false) was seen.
 */
export function genlAnswers(chunks: readonly Buffer[], seq: number, o: { dump: boolean; le?: boolean }): { messages: GenlMessage[]; complete: boolean } {
  const le = o.le ?? HOST_LE;
  const messages: GenlMessage[] = [];
  let complete = false;
  for (const chunk of chunks) {
    for (const m of nlMessages(chunk, le)) {
      if (m.seq !== seq) continue;
      if (complete) throw new NetlinkError(`a message of type ${m.type} after the end of the answer`);
      if (m.type === NLMSG_NOOP) continue;
      if (m.type === NLMSG_OVERRUN) throw new NetlinkError('the kernel overran the socket');
      if (m.type === NLMSG_ERROR || m.type === NLMSG_DONE) {
        const errno = nlErrno(m, le);
        if (errno !== 0) {
          const said = nlErrorText(m, le);
          throw new NetlinkError(`${errnoText(errno)}${said ? `: ${said}` : ''}`, errno);
        }
        complete = true;
        continue;
      }
      if (m.flags & NLM_F_DUMP_INTR) throw new NetlinkError('the dump changed while it was read', constants.errno.EINTR);
      if (m.payload.length < GENLH.size) throw new NetlinkError(`a generic netlink message of ${m.payload.length} bytes`);
      messages.push({ type: m.type, cmd: m.payload.readUInt8(GENLH.offset.cmd), attrs: nlAttrs(m.payload.subarray(GENLH.size), le) });
      if (!o.dump) complete = true;
    }
  }
  return { messages, complete };
}

/** The families of CTRL_CMD_GETFAMILY answers (one for a name, every one for a dump). */
export function parseFamilies(messages: readonly GenlMessage[], le: boolean = HOST_LE): GenlFamily[] {
  const r = ints(le);
  return messages.map((m) => {
    let name: string | null = null;
    let id: number | null = null;
    let version = 0;
    for (const a of m.attrs) {
      if (a.type === CTRL_ATTR_FAMILY_NAME) name = nulString(a.data, 'CTRL_ATTR_FAMILY_NAME');
      else if (a.type === CTRL_ATTR_FAMILY_ID) id = exact(a.data, 2, 'CTRL_ATTR_FAMILY_ID') && r.u16(a.data, 0);
      else if (a.type === CTRL_ATTR_VERSION) version = exact(a.data, 4, 'CTRL_ATTR_VERSION') && r.u32(a.data, 0);
    }
    if (name === null || id === null) throw new NetlinkError('a family without its name or number');
    return { name, id, version };
  });
}

/** Checks an attribute's length; returns 1, so `exact(...) && read` reads. */
export function exact(b: Buffer, n: number, what: string): 1 {
  if (b.length !== n) throw new NetlinkError(`${what} is ${b.length} bytes, not ${n}`);
  return 1;
}

/** An NLA_NUL_STRING's text (up to its NUL); throws without one. */
export function nulString(b: Buffer, what: string): string {
  const nul = b.indexOf(0);
  if (nul < 0) throw new NetlinkError(`${what} has no terminating NUL`);
  return b.toString('utf8', 0, nul);
}

/** `ENOENT (errno 2)` */
export function errnoText(errno: number): string {
  return `${errnoName(errno)} (errno ${errno})`;
}
