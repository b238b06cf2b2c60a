// dbus-next (with the XML parser it brings) is loaded the first time a
// system bus is dialled, not at start: a router without one (OpenWrt, a
// container, this lab) never needs it, and loading it cost ~5 MB of the
// daemon's memory there (issue 17: the footprint on a router).
//
// Loaded through require, synchronously, so the callers' bus code stays as
// it was; its CommonJS build is the one every bus connection then uses.
import { createRequire } from 'node:module';

type DbusNext = typeof import('@jellybrick/dbus-next');

let loaded: DbusNext | null = null;

/** The library, loaded on first use. */
export function dbusNext(): DbusNext {
  loaded ??= createRequire(import.meta.url)('@jellybrick/dbus-next') as DbusNext;
  return loaded;
}

/** A Variant's value, or `v` itself (nothing can be a Variant before the library is loaded). */
export function unwrapVariant(v: unknown): unknown {
  return loaded !== null && v instanceof loaded.Variant ? (v as { value: unknown }).value : v;
}
