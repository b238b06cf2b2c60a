// The ceiling of `npm run bench -- dns`'s hit figure: the least a Node UDP
// DNS responder can do. One dgram socket (the options DnsServer uses), every
// query answered with its own question and one A record, no parsing, no
// cache, no policy. Whatever splitwan's hit path costs beyond this is the
// resolver's; what this costs is Node's and the kernel's.
//
// argv[2]: the port on 127.0.0.1. IPC out: { type: 'ready', port }.
import dgram from 'node:dgram';

const port = Number(process.argv[2] ?? 0);
// name: pointer to the question; type A, class IN, TTL 3600, 4 bytes: 10.0.0.1
const record = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 0, 0, 1]);
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
sock.on('message', (msg, rinfo) => {
  let i = 12; // skip the question's name (no compression in a query), then type and class
  while (i < msg.length && msg[i] !== 0) i += msg[i]! + 1;
  const end = i + 5;
  if (end > msg.length) return;
  const out = Buffer.allocUnsafe(end + record.length);
  msg.copy(out, 0, 0, end);
  record.copy(out, end);
  out[2] = 0x81; // QR, RD
  out[3] = 0x80; // RA, NOERROR
  out.writeUInt16BE(1, 6); // ANCOUNT
  out.writeUInt32BE(0, 8); // NSCOUNT, ARCOUNT (an OPT, if any, is left out)
  sock.send(out, rinfo.port, rinfo.address);
});
sock.bind(port, '127.0.0.1', () => void process.send?.({ type: 'ready', port: sock.address().port }));
process.on('message', (m: { cmd?: string }) => m.cmd === 'stop' && sock.close(() => process.exit(0)));
process.on('disconnect', () => process.exit(0));
