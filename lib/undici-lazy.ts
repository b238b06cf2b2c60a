// undici, loaded on first use. It adds ~10 MB to the process once imported
// (measured by `bench dns`: the resolver's empty RSS 89 -> 79 MB without it),
// and most configs never speak HTTP: no DoH upstream, no list by URL, no http
// probe. Types are imported statically (erased at build); the code only here.
type Undici = typeof import('undici');

let loading: Promise<Undici> | null = null;

export function undici(): Promise<Undici> {
  return (loading ??= import('undici'));
}
