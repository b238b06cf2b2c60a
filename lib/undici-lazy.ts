// undici, loaded on first use. It adds ~10 MB to the process once imported
// (measured by `bench dns`: the resolver's empty RSS 89 -> 79 MB without it),
// and most configs never speak HTTP: no DoH upstream, no list by URL, no http
// probe. Types are imported statically (erased at build); the code only here.
// Requests name a dispatcher made from this module (an Agent, or one composed
// on it), never getGlobalDispatcher() or request() without one: the global
// slot may hold the Agent of the undici bundled in Node (6.x in Node 20 and
// 22), which refuses this undici's (7) handlers (config/lists/fetch.ts says when).
type Undici = typeof import('undici');

let loading: Promise<Undici> | null = null;

export function undici(): Promise<Undici> {
  return (loading ??= import('undici'));
}
