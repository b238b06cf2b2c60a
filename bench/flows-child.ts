// Traffic for the leak benchmarks (`bench failover`'s cycles, `bench
// firewall`): flows that live through faults, as a user's do. Run inside a
// lab namespace (`ip netns exec NS node flows-child.js ...`); stops on SIGTERM.
//
//   server ADDR TCP_PORT UDP_PORT
//     TCP: writes a line to every connection every 100 ms (a stream: the
//     server keeps sending after a failover dropped the router's conntrack
//     entry, which is what made the router send resets out of the WAN).
//     UDP: echoes every datagram, and sends a tick every 100 ms to each peer
//     heard in the last 3 s (a game or QUIC server: replies after the entry
//     is gone).
//   client ADDR TCP_PORT UDP_PORT STREAMS
//     TCP: keeps STREAMS connections open, each writing a byte every 500 ms
//     (an app's keepalive: after a failover it meets the server's reset and
//     learns its flow is gone) and giving up after 2 s without data (an app's
//     read timeout); it reconnects 200 ms after one ends.
//     UDP: one long-lived socket sending every 50 ms, and a new socket every
//     500 ms that sends 3 datagrams and closes after a second.
// stdout: `ready` once listening/started, then every second
//   `stats <tcp bytes> <tcp connects> <tcp ends> <udp sent> <udp received>`.
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, addr, tcpPortS, udpPortS, streamsS] = process.argv.slice(2);
const tcpPort = Number(tcpPortS);
const udpPort = Number(udpPortS);
if ((mode !== 'server' && mode !== 'client') || !addr || !tcpPort || !udpPort) {
  process.stderr.write('usage: flows-child.js server|client ADDR TCP_PORT UDP_PORT [STREAMS]\n');
  process.exit(2);
}
const family = net.isIPv6(addr) ? 'udp6' : 'udp4';
const stats = { tcpBytes: 0, connects: 0, ends: 0, udpSent: 0, udpRecv: 0 };
const timers: NodeJS.Timeout[] = [];
let stopping = false;

if (mode === 'server') {
  const tcp = net.createServer((s) => {
    s.on('error', () => undefined);
    s.resume(); // the client's keepalive bytes
    const t = setInterval(() => s.write('x\n'), 100);
    s.on('close', () => clearInterval(t));
  });
  const udp = dgram.createSocket(family);
  const peers = new Map<string, { port: number; address: string; last: number }>();
  udp.on('message', (m, r) => {
    stats.udpRecv++;
    peers.set(`${r.address}:${r.port}`, { port: r.port, address: r.address, last: Date.now() });
    udp.send(m, r.port, r.address, () => stats.udpSent++);
  });
  timers.push(
    setInterval(() => {
      const now = Date.now();
      for (const [k, p] of peers) {
        if (now - p.last > 3000) peers.delete(k);
        else udp.send('tick', p.port, p.address, () => stats.udpSent++);
      }
    }, 100),
  );
  let bound = 0;
  const ready = () => ++bound === 2 && process.stdout.write('ready\n');
  tcp.listen(tcpPort, addr, ready);
  udp.bind(udpPort, addr, ready);
} else {
  const streams = Number(streamsS ?? 4);
  const open = (): void => {
    if (stopping) return;
    const s = net.connect(tcpPort, addr);
    const keepalive = setInterval(() => s.writable && s.write('k'), 500);
    s.setTimeout(2000, () => s.destroy());
    s.on('connect', () => stats.connects++);
    s.on('data', (d) => (stats.tcpBytes += d.length));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(keepalive);
      stats.ends++;
      if (!stopping) setTimeout(open, 200);
    });
  };
  for (let i = 0; i < streams; i++) open();
  const long = dgram.createSocket(family);
  long.on('message', () => stats.udpRecv++);
  long.on('error', () => undefined);
  timers.push(setInterval(() => long.send('long', udpPort, addr, (e) => !e && stats.udpSent++), 50));
  timers.push(
    setInterval(() => {
      const s = dgram.createSocket(family);
      s.on('message', () => stats.udpRecv++);
      s.on('error', () => undefined);
      for (let i = 0; i < 3; i++) s.send('new', udpPort, addr, (e) => !e && stats.udpSent++);
      setTimeout(() => s.close(), 1000);
    }, 500),
  );
  process.stdout.write('ready\n');
}

timers.push(setInterval(() => process.stdout.write(`stats ${stats.tcpBytes} ${stats.connects} ${stats.ends} ${stats.udpSent} ${stats.udpRecv}\n`), 1000));
process.on('SIGTERM', () => {
  stopping = true;
  for (const t of timers) clearInterval(t);
  process.exit(0);
});
