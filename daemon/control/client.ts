// The CLI's side of the control API: one request, JSON back, and errors that
// say what to do (daemon not running → exit 3; not root → exit 4).
import http from 'node:http';
import type { ControlRoute } from './protocol.js';

export class NotRunningError extends Error {
  readonly code = 'SPLITWAN_NOT_RUNNING';
}
export class ControlAccessError extends Error {
  readonly code = 'SPLITWAN_CONTROL_ACCESS';
}
export class ControlRequestError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** One request; `query` is appended to the route's path (explain's ?q=). */
export function controlRequest<T>(socketPath: string, route: ControlRoute, body?: unknown, o: { timeoutMs?: number; query?: URLSearchParams } = {}): Promise<T> {
  const { method } = route;
  const path = o.query ? `${route.path}?${o.query.toString()}` : route.path;
  const timeoutMs = o.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { socketPath, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          let j: unknown;
          try {
            j = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new ControlRequestError(`the daemon answered something that is not JSON (HTTP ${res.statusCode})`, 'SPLITWAN_CONTROL_FAILED', res.statusCode ?? 0));
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = j as { error?: string; code?: string };
            return reject(new ControlRequestError(e.error ?? `HTTP ${res.statusCode}`, e.code ?? 'SPLITWAN_CONTROL_FAILED', res.statusCode ?? 500));
          }
          resolve(j as T);
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`the daemon did not answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new NotRunningError(`splitwan is not running (no daemon on ${socketPath}); start it with: sudo splitwan run, or systemctl start splitwan`));
      else if (e.code === 'EACCES' || e.code === 'EPERM') reject(new ControlAccessError(`the control socket ${socketPath} is root only: use sudo`));
      else reject(e);
    });
    req.end(payload);
  });
}
