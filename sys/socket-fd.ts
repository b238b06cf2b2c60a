// The OS file descriptor behind a Node socket, for the few kernel calls Node
// has no API for (SO_MARK, SO_ORIGINAL_DST, receive timestamps).
import type dgram from 'node:dgram';
import type net from 'node:net';
import { processNotes, type FallbackReport } from './native-fallback.js';

let stateSymbol: symbol | undefined;

/**
 * The fd of a bound dgram socket, or -1. Read through dgram's internal
 * `state symbol` (`sock[kStateSymbol].handle.fd`), because the
 * public-looking `sock._handle` getter is deprecated (DEP0112) and prints a
 * warning; should a future Node rename that symbol, `_handle` is the
 * fallback (Node's warning, and `report` hears it once) rather than a failure.
 */
export function dgramFd(sock: dgram.Socket, report: FallbackReport = {}): number {
  // One symbol for every dgram socket: found once (the upstream sends ask for every datagram).
  const sym = stateSymbol !== undefined && Object.hasOwn(sock, stateSymbol) ? stateSymbol : (stateSymbol = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'state symbol'));
  const state = sym ? (sock as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[sym] : undefined;
  let fd = state?.handle?.fd;
  if (fd === undefined) {
    (report.notes ?? processNotes).note(report.logger, 'path sockets: the dgram fd from its state', `Node ${process.version} has no 'state symbol' on a dgram socket`, 'its deprecated _handle (DEP0112)');
    fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  }
  return typeof fd === 'number' ? fd : -1;
}

/** The fd of a net.Socket, or -1 (net.Socket's `_handle`, unlike dgram's, is not deprecated). */
export function netFd(sock: net.Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}
