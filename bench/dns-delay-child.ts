// A resolver DELAY_MS away, for `npm run bench -- health-load`: run inside a
// gateway's namespace (`ip netns exec NS node dns-delay-child.js`), it takes
// UDP queries on HOST:PORT and relays each to UPSTREAM_HOST:UPSTREAM_PORT
// (the gateway's dnsmasq) after DELAY_MS, and the answer back: a gateway
// whose round trip is DELAY_MS, where the lab's are a millisecond.
// Bounded: at most 1000 queries held at once (more are dropped). Stops on
// SIGTERM. First line on stdout: `ready`.
//
// argv: HOST PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS
import dgram from 'node:dgram';

const [host = '10.64.0.1', portS = '5353', upHost = '10.64.0.1', upPortS = '53', delayS = '150'] = process.argv.slice(2);
const delayMs = Number(delayS);
const MAX_HELD = 1000;
let held = 0;

const server = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
server.on('message', (msg, from) => {
  if (held >= MAX_HELD) return;
  held++;
  setTimeout(() => {
    const up = dgram.createSocket(upHost.includes(':') ? 'udp6' : 'udp4');
    const done = (): void => {
      clearTimeout(timer);
      up.close();
      held--;
    };
    const timer = setTimeout(done, 5000);
    up.on('message', (answer) => {
      server.send(answer, from.port, from.address);
      done();
    });
    up.on('error', done);
    up.send(msg, Number(upPortS), upHost);
  }, delayMs);
});
server.bind(Number(portS), host, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
