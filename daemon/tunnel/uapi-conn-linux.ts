// One long-lived connection to a wireguard-go UAPI socket
// (/var/run/wireguard/IF.sock), asked `get=1` again and again: wireguard-go
// serves any number of operations on one connection, each answer ending in
// `errno=N` and a blank line. The handshake probe reads every tunnel every
// second; a connection each time (socket, connect, a goroutine in
// wireguard-go, close) was a good part of the idle daemon's wake-ups on a
// router (issue 17).
//
// One request at a time. A connection that errors, closes (wireguard-go
// restarted or stopped) or does not answer in time is dropped, and the next
// request connects again. The answer holds the private key: it is handed to
// the caller (uapi.ts keeps no key), never logged or put in an error.
import { connect, type Socket } from 'node:net';

/** An answer larger than this is not wireguard-go's (the connection is dropped). */
const MAX_ANSWER = 1 << 20;

export class UapiConnection {
  private sock: Socket | null = null;
  private chunks: Buffer[] = [];
  private size = 0;
  private waiting: { resolve(text: string): void; reject(e: Error): void; timer: NodeJS.Timeout } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** Connections made (tests). */
  connects = 0;

  constructor(
    private readonly path: string,
    private readonly timeoutMs: number,
  ) {}

  /** `get=1`: the answer up to its blank line. */
  get(): Promise<string> {
    const next = this.queue.then(() => this.ask());
    this.queue = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.drop(new Error(`${this.path}: closed`));
  }

  private ask(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => this.drop(new Error(`no answer on ${this.path} within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.waiting = { resolve, reject, timer };
      this.chunks = [];
      this.size = 0;
      (this.sock ?? this.open()).write('get=1\n\n');
    });
  }

  private open(): Socket {
    const sock = connect(this.path);
    this.connects++;
    this.sock = sock;
    sock.on('data', (b: Buffer) => {
      if (this.sock !== sock) return;
      this.chunks.push(b);
      this.size += b.length;
      const text = Buffer.concat(this.chunks, this.size).toString('utf8');
      if (text.includes('\n\n')) this.answered(text);
      else if (this.size > MAX_ANSWER) this.drop(new Error(`${this.path}: answer over 1 MiB`));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (this.sock === sock) this.drop(new Error(`${this.path}: ${e.code ?? e.message}`));
    });
    sock.on('close', () => {
      if (this.sock === sock) this.drop(new Error(`${this.path}: closed before the end of the answer`));
    });
    return sock;
  }

  private answered(text: string): void {
    const w = this.waiting;
    this.waiting = null;
    this.chunks = [];
    this.size = 0;
    if (!w) return this.drop(null); // an answer nobody asked for: out of step, start over
    clearTimeout(w.timer);
    w.resolve(text);
  }

  /** Drops the connection (the next request makes a new one); `err` fails the request waiting, if any. */
  private drop(err: Error | null): void {
    const sock = this.sock;
    this.sock = null;
    sock?.destroy();
    const w = this.waiting;
    this.waiting = null;
    if (w) {
      clearTimeout(w.timer);
      w.reject(err ?? new Error(`${this.path}: closed`));
    }
  }
}
