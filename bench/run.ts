// `npm run bench -- NAME`: runs one benchmark. Each prints readable lines and,
// last, one JSON object with its figures (the line scripts parse).
const benches: Record<string, () => Promise<unknown>> = {
  policy: async () => (await import('./policy.js')).run(),
  tag: async () => (await import('./tag.js')).run(),
  'nft-tag': async () => (await import('./nft-tag.js')).run(),
  forward: async () => (await import('./forward.js')).run(),
  dns: async () => (await import('./dns.js')).run(),
  failover: async () => (await import('./failover.js')).run(),
  proxy: async () => (await import('./proxy.js')).run(),
  'health-load': async () => (await import('./health-load.js')).run(),
  firewall: async () => (await import('./firewall.js')).run(),
  links: async () => (await import('./links.js')).run(),
  footprint: async () => (await import('./footprint.js')).run(),
  roam: async () => (await import('./roam.js')).run(),
  resume: async () => (await import('./resume.js')).run(),
  portal: async () => (await import('./portal.js')).run(), // issue 16: captive portals
  'wg-read': async () => (await import('./wg-read.js')).run(), // issue 17: a WireGuard link's state without a process
};

const name = process.argv[2];
const bench = name ? benches[name] : undefined;
if (!bench) {
  process.stderr.write(`usage: npm run bench -- NAME\nbenchmarks: ${Object.keys(benches).join(', ')}\n`);
  process.exit(2);
}
await bench();
