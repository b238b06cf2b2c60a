// logind's PrepareForSleep(bool) on the system bus (issue 16): true just
// before the machine suspends, false once it has resumed. The health monitor
// then probes every gateway at once and takes the rounds that fail while the
// network comes back as no evidence (daemon/health/monitor.ts noteResume).
// The boot-clock jump and a round that starts seconds late find a resume too;
// this is the earlier, explicit word where logind runs.
//
// Only logind's signal counts: the match rule names the sender
// org.freedesktop.login1, so the bus delivers it from that name's owner only
// (any local user could send a signal of that name otherwise). Without a
// system bus (a router, a container) it does nothing.
import { existsSync } from 'node:fs';
import type { Message, MessageBus } from '@jellybrick/dbus-next';
import { dbusNext } from './dbus-next-lazy.js';
import type { Clock, Logger } from '../lib/logger.js';
import type { Watcher } from './deps.js';
import { socketPath } from './resolved-linux.js';

const LOGIN1 = 'org.freedesktop.login1';
const LOGIN1_MANAGER = 'org.freedesktop.login1.Manager';
export const PREPARE_FOR_SLEEP_MATCH = `type='signal',sender='${LOGIN1}',path='/org/freedesktop/login1',interface='${LOGIN1_MANAGER}',member='PrepareForSleep'`;
const RETRY_MS = 10_000;

export interface SleepWatchOptions {
  logger: Logger;
  clock: Clock;
  /** Default $DBUS_SYSTEM_BUS_ADDRESS, else the system bus socket. */
  busAddress?: string;
}

/** Calls `onChange(true)` before a suspend and `onChange(false)` after the resume. */
export function watchSleep(o: SleepWatchOptions, onChange: (sleeping: boolean) => void): Watcher {
  const address = o.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? 'unix:path=/var/run/dbus/system_bus_socket';
  let bus: MessageBus | null = null;
  let stopped = false;
  let retry: unknown = null;
  const again = () => {
    if (stopped || retry !== null) return;
    retry = o.clock.setTimeout(() => {
      retry = null;
      connect();
    }, RETRY_MS);
  };
  const drop = (b: MessageBus) => {
    if (bus !== b) return;
    bus = null;
    try {
      b.disconnect();
    } catch {
      // closed already
    }
    again();
  };
  const connect = () => {
    if (stopped) return;
    const path = socketPath(address);
    if (path !== null && !existsSync(path)) return again();
    const b = dbusNext().sessionBus({ busAddress: address });
    bus = b;
    // 'error' is emitted but missing from the library's event map; unhandled it would throw.
    (b as unknown as NodeJS.EventEmitter).on('error', (err: Error) => {
      o.logger.debug({ err: err.message }, 'system bus (logind sleep signals): connection failed');
      drop(b);
    });
    (b as unknown as { _connection?: { on?: (ev: string, f: () => void) => void } })._connection?.on?.('end', () => drop(b));
    b.on('message', (m: Message) => {
      if (m.type !== 4 /* SIGNAL */ || m.interface !== LOGIN1_MANAGER || m.member !== 'PrepareForSleep') return;
      const sleeping = (m.body as unknown[])[0];
      if (typeof sleeping === 'boolean') onChange(sleeping);
    });
    b.call(new (dbusNext().Message)({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'AddMatch', signature: 's', body: [PREPARE_FOR_SLEEP_MATCH] })).catch((e: unknown) => {
      o.logger.warn({ err: (e as Error).message }, 'could not subscribe to logind\'s sleep signals; a resume is still found from the clocks');
    });
  };
  connect();
  return {
    stop() {
      stopped = true;
      if (retry !== null) o.clock.clearTimeout(retry);
      const b = bus;
      bus = null;
      try {
        b?.disconnect();
      } catch {
        // closed already
      }
    },
  };
}
