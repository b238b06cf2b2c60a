#!/usr/bin/env python3
# Sends one hand-made IPv4 packet with a raw socket (IP_HDRINCL), for lab
# tests that need a packet no socket would send: a SYN-ACK for a connection
# that does not exist, a datagram from an address that is not local. Run it
# inside a lab namespace (`ip netns exec NS python3 raw-send.py ...`).
#
#   raw-send.py tcp SRC SPORT DST DPORT FLAGS   (FLAGS: letters of S A R F P, e.g. SA)
#   raw-send.py udp SRC SPORT DST DPORT TEXT
import socket
import struct
import sys


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_header(src: bytes, dst: bytes, proto: int, payload_len: int) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0x5157, 0, 64, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:]


def main() -> None:
    kind, src_s, sport, dst_s, dport, extra = sys.argv[1:7]
    src, dst = socket.inet_aton(src_s), socket.inet_aton(dst_s)
    sport, dport = int(sport), int(dport)
    if kind == "tcp":
        bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}
        flags = sum(bits[c] for c in extra)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, 0x1000, 0x2000 if flags & 16 else 0, 5 << 4, flags, 64240, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        seg = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        proto = 6
    elif kind == "udp":
        data = extra.encode()
        udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
        pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
        seg = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        proto = 17
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip_header(src, dst, proto, len(seg)) + seg, (dst_s, 0))


if __name__ == "__main__":
    main()
