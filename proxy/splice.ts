// Joins two TCP sockets both ways. Node's pipe() gives backpressure (a slow
// reader pauses the fast writer) and, with allowHalfOpen sockets, half-close:
// a FIN from one side ends the other side's writable only. What pipe() does not
// give is the rest of a proxy's contract, added here:
// - a reset (or any error) on one side resets the other, so the far end sees
//   what happened instead of a clean FIN that would look like a complete reply;
// - an idle timeout over both directions (socket timeouts reset on reads and on
//   writes, so a one-way transfer keeps both sockets active);
// - one settle with the reason, after both sockets are gone.
import type net from 'node:net';

export type SpliceEnd = 'closed' | 'reset-by-client' | 'reset-by-server' | 'idle';

export interface SpliceResult {
  end: SpliceEnd;
  /** Bytes read from the client (what went up) and from the server (down) on these sockets. */
  up: number;
  down: number;
}

/** A's `error` means its peer reset it or the kernel gave up: pass a reset on, never a FIN. */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  // resetAndDestroy needs a connected TCP handle; anything else is just destroyed.
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

export function splice(client: net.Socket, server: net.Socket, idleTimeoutMs: number): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let end: SpliceEnd | null = null;
    let open = 2;
    const finish = (): void => {
      if (--open > 0) return;
      resolve({ end: end ?? 'closed', up: client.bytesRead, down: server.bytesRead });
    };
    const onError = (side: 'client' | 'server') => (): void => {
      end ??= side === 'client' ? 'reset-by-client' : 'reset-by-server';
      reset(side === 'client' ? server : client);
    };
    const onIdle = (): void => {
      end ??= 'idle';
      reset(client);
      reset(server);
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
      if (!server.destroyed && !client.readableEnded) reset(server);
    });
    server.once('close', () => {
      if (!client.destroyed && !server.readableEnded) reset(client);
    });
    if (idleTimeoutMs > 0) {
      client.setTimeout(idleTimeoutMs, onIdle);
      server.setTimeout(idleTimeoutMs, onIdle);
    }
    client.pipe(server);
    server.pipe(client);
  });
}
