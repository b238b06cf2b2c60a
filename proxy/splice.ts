// Joins two TCP sockets both ways. The contract, whatever moves the bytes:
// - backpressure: a slow reader pauses the fast writer (nothing is buffered
//   without bound);
// - half-close: a FIN from one side ends the other side's writable only (the
//   sockets are allowHalfOpen); a socket that ended both ways is closed;
// - a reset (or any error) on one side resets the other, so the far end sees
//   what happened instead of a clean FIN that would look like a complete reply;
//   a side gone entirely (closed before its FIN) resets the other too;
// - an idle timeout over both directions (activity either way keeps both
//   sockets open, so a one-way transfer is not idle);
// - one settle with the reason and the bytes each way, after both sockets are
//   gone.
//
// Two implementations: `pipeSplicer` below, Node's streams and pipe() (the
// portable one, and the fallback), and on Linux `spliceSplicer` in
// splice-linux.ts, which moves the bytes in the kernel with splice(2) and
// never lets them into JS. `defaultSplicer()` (splice-linux.ts) picks.
import type net from 'node:net';

export type SpliceEnd = 'closed' | 'reset-by-client' | 'reset-by-server' | 'idle';

export interface SpliceResult {
  end: SpliceEnd;
  /** Bytes read from the client (what went up) and from the server (down) on these sockets. */
  up: number;
  down: number;
}

export interface SpliceOptions {
  /**
   * Bytes already read from the client (the peek), written to the server
   * before anything else. They count in `up` (they were read on the client
   * socket, so its bytesRead has them already).
   */
  head?: Buffer;
  /** The client's FIN came while peeking: the server gets one after the head. */
  clientEnded?: boolean;
}

/** A splice in progress. */
export interface Splice {
  readonly done: Promise<SpliceResult>;
  /** Bytes so far each way (`up`, `down` as in SpliceResult). */
  bytes(): { up: number; down: number };
  /** Resets both sides now (a dead gateway's path, the proxy closing); `done` settles with `closed` unless it had ended already. */
  reset(): void;
}

export interface Splicer {
  /** `pipe` or `splice`, for logs and tests. */
  readonly name: string;
  /**
   * Takes both sockets over: from here on, only the Splice touches them
   * (never write to, end or destroy them directly: reset() instead).
   */
  start(client: net.Socket, server: net.Socket, idleTimeoutMs: number, o?: SpliceOptions): Splice;
  /**
   * Only where the splicer can: takes two connected, non-blocking TCP fds
   * that no Node socket wraps (the raw connection path, accept-linux.ts);
   * the Splice owns them and closes them. The client's first bytes are still
   * in its socket (peeked, never read), so there is no head. `seen`: what
   * epoll reported on them so far (its edges were the caller's), so the
   * splicer knows what to try at once.
   */
  startFds?(clientFd: number, serverFd: number, idleTimeoutMs: number, seen?: { serverReadable: boolean; clientHup: boolean; serverHup: boolean }): Splice;
}

/** A's `error` means its peer reset it or the kernel gave up: pass a reset on, never a FIN. */
export function resetSocket(s: net.Socket): void {
  if (s.destroyed) return;
  // resetAndDestroy needs a connected TCP handle; anything else is just destroyed.
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

/**
 * Node's pipe() gives backpressure and, with allowHalfOpen sockets, half-close.
 * What pipe() does not give is the rest of the contract, added here.
 */
function pipeStart(client: net.Socket, server: net.Socket, idleTimeoutMs: number, o: SpliceOptions = {}): Splice {
  let end: SpliceEnd | null = null;
  const done = new Promise<SpliceResult>((resolve) => {
    let open = 2;
    const finish = (): void => {
      if (--open > 0) return;
      resolve({ end: end ?? 'closed', up: client.bytesRead, down: server.bytesRead });
    };
    const onError = (side: 'client' | 'server') => (): void => {
      end ??= side === 'client' ? 'reset-by-client' : 'reset-by-server';
      resetSocket(side === 'client' ? server : client);
    };
    const onIdle = (): void => {
      end ??= 'idle';
      resetSocket(client);
      resetSocket(server);
    };
    client.on('error', onError('client'));
    server.on('error', onError('server'));
    client.once('close', finish);
    server.once('close', finish);
    // A socket that ended both ways closes on its own (allowHalfOpen leaves it to us otherwise).
    const closeWhenDone = (s: net.Socket): void => {
      const check = (): void => {
        if (s.readableEnded && s.writableFinished) s.destroy();
      };
      s.on('end', check);
      s.on('finish', check);
    };
    closeWhenDone(client);
    closeWhenDone(server);
    // When one side is gone entirely (closed, not half-closed), the other has nothing to talk to.
    client.once('close', () => {
      if (!server.destroyed && !client.readableEnded) resetSocket(server);
    });
    server.once('close', () => {
      if (!client.destroyed && !server.readableEnded) resetSocket(client);
    });
    if (idleTimeoutMs > 0) {
      client.setTimeout(idleTimeoutMs, onIdle);
      server.setTimeout(idleTimeoutMs, onIdle);
    }
    if (o.head !== undefined && o.head.length > 0) server.write(o.head);
    if (o.clientEnded) server.end();
    client.pipe(server);
    server.pipe(client);
  });
  return {
    done,
    bytes: () => ({ up: client.bytesRead, down: server.bytesRead }),
    reset: () => {
      resetSocket(server);
      resetSocket(client);
    },
  };
}

export const pipeSplicer: Splicer = { name: 'pipe', start: pipeStart };

/** The portable splice, as a promise (see the header). */
export function splice(client: net.Socket, server: net.Socket, idleTimeoutMs: number, o?: SpliceOptions): Promise<SpliceResult> {
  return pipeStart(client, server, idleTimeoutMs, o).done;
}
