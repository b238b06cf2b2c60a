#!/usr/bin/env python3
# Asks one DNS server the same A question from one fixed source port, once
# per fwmark given, in turn (a new socket each time, SO_REUSEADDR): what
# splitwan's own forwarder does when two gateways share their resolver's
# address and a random source port repeats. Prints one JSON line: per mark,
# the answer's first address or the error. For test/e2e (run inside a lab
# namespace with `ip netns exec`); needs root for SO_MARK.
#
#   udp-mark.py SERVER SPORT NAME MARK [MARK...]
import json, random, socket, struct, sys

SO_MARK = 36
server, sport, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = []
for mark in sys.argv[4:]:
    qid = random.randint(0, 65535)
    qname = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
    query = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack('>HH', 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, int(mark, 0))
        s.bind(('0.0.0.0', sport))
        s.settimeout(3)
        s.sendto(query, (server, 53))
        data, _ = s.recvfrom(4096)
        out.append({'mark': mark, 'answer': socket.inet_ntoa(data[-4:])})
    except Exception as e:  # reported, not raised: the test reads every result
        out.append({'mark': mark, 'error': repr(e)})
    finally:
        s.close()
print(json.dumps(out))
