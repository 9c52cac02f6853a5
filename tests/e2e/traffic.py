"""traffic - the servers and the traffic agent of the NAT lab.

  python3 traffic.py serve --tcp 443,5432 --udp 53,123 [--udplite 5000]
      Dual-stack servers.  A TCP client sends one command byte: 'c' -> the
      server closes at once (the client then closes too: TIME_WAIT), 'h'
      -> the server holds the connection until the client closes it.  UDP
      ports (and UDP-Lite ports) echo every datagram.  Prints "ready" once
      bound.

  python3 traffic.py agent
      Reads one JSON command per line on stdin, runs it, answers one JSON
      line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}).
      Held sockets stay open until the agent is told to close them or
      dies.  Ops: tcp_short, tcp_hold, tcp_close_wait, tcp_syn, close_tag,
      same_port, udp, udplite, udp_blast, tcp_try, sctp_init, ping, quit.
      See Agent below.

Standard library only.
"""

import json
import os
import selectors
import socket
import struct
import sys
import time

IPPROTO_UDPLITE = 136
IPPROTO_SCTP = 132


def _echo(s, dst, port, what):
    """One request/reply exchange on datagram socket s with the echo
    server at dst:port (three tries); closes s, returns its source port."""
    s.settimeout(3)
    s.connect((dst, port))
    msg = os.urandom(8)
    try:
        for _ in range(3):
            s.send(msg)
            try:
                if s.recv(64) == msg:
                    return s.getsockname()[1]
            except socket.timeout:
                continue
        raise RuntimeError("no %s echo from %s:%d" % (what, dst, port))
    finally:
        s.close()


def _family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


# ---------------------------------------------------------------- servers

def serve(tcp_ports, udp_ports, udplite_ports=()):
    sel = selectors.DefaultSelector()
    for port in tcp_ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(4096)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("listen", None))
    for port, proto in [(p, 0) for p in udp_ports] + \
            [(p, IPPROTO_UDPLITE) for p in udplite_ports]:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, proto)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("udp", None))
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            kind, state = key.data
            s = key.fileobj
            if kind == "listen":
                try:
                    c, _ = s.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, ("conn", "new"))
            elif kind == "udp":
                try:
                    data, peer = s.recvfrom(2048)
                except BlockingIOError:
                    continue
                s.sendto(data, peer)
            else:
                try:
                    data = s.recv(64)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if state == "new" and data[:1] == b"h":
                    sel.modify(s, selectors.EVENT_READ, ("conn", "hold"))
                    continue
                if state == "hold" and data:
                    continue
                # 'c', EOF or anything else: close
                sel.unregister(s)
                s.close()


# ------------------------------------------------------------------ agent

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC32c (Castagnoli), as SCTP's checksum (RFC 9260 appendix A)."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_init_packet(sport, dport, tag):
    """An SCTP packet holding one INIT chunk, checksum filled in."""
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, tag, 65536, 10, 10, tag)
    hdr = struct.pack("!HHII", sport, dport, 0, 0)
    crc = crc32c(hdr + chunk)
    # the checksum goes on the wire least significant byte first
    return struct.pack("!HHI", sport, dport, 0) + struct.pack("<I", crc) + \
        chunk


def _checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Agent:
    def __init__(self):
        self.held = {}  # tag -> [socket]

    def _connect(self, dst, port, src=None, sport=0, reuse=False):
        s = socket.socket(_family(dst), socket.SOCK_STREAM)
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if src is not None or sport:
            s.bind((src or ("::" if ":" in dst else "0.0.0.0"), sport))
        s.settimeout(5)
        s.connect((dst, port))
        return s

    @staticmethod
    def _drain(s):
        while s.recv(64):
            pass

    def tcp_short(self, dst, port, n, src=None):
        """n connections that the server closes first, then we close:
        TIME_WAIT in conntrack.  Returns the local ports used."""
        ports = []
        for _ in range(n):
            s = self._connect(dst, port, src)
            ports.append(s.getsockname()[1])
            s.sendall(b"c")
            self._drain(s)
            s.close()
        return {"ports": ports}

    def tcp_hold(self, dst, port, n, tag, src=None):
        """n connections held open (ESTABLISHED)."""
        ports = []
        for _ in range(n):
            s = self._connect(dst, port, src)
            s.sendall(b"h")
            ports.append(s.getsockname()[1])
            self.held.setdefault(tag, []).append(s)
        return {"ports": ports}

    def tcp_close_wait(self, dst, port, n, tag, src=None):
        """n connections the server closed and we keep (CLOSE_WAIT)."""
        ports = []
        for _ in range(n):
            s = self._connect(dst, port, src)
            s.sendall(b"c")
            self._drain(s)
            ports.append(s.getsockname()[1])
            self.held.setdefault(tag, []).append(s)
        return {"ports": ports}

    def tcp_syn(self, dst, port, n, tag):
        """n connects whose SYN is dropped on the way (SYN_SENT)."""
        ports = []
        for _ in range(n):
            s = socket.socket(_family(dst), socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect((dst, port))
            except BlockingIOError:
                pass
            ports.append(s.getsockname()[1])
            self.held.setdefault(tag, []).append(s)
        return {"ports": ports}

    def close_tag(self, tag, n):
        """Closes n held connections of tag cleanly: our FIN first, then
        the server's (TIME_WAIT)."""
        socks = self.held.get(tag, [])
        done = socks[:n]
        del socks[:n]
        ports = []
        for s in done:
            ports.append(s.getsockname()[1])
            s.shutdown(socket.SHUT_WR)
            self._drain(s)
            s.close()
        return {"ports": ports}

    def same_port(self, dst, dports, sports, tag, src=None):
        """For each source port, one held connection to each destination
        port, all from that same source port (SO_REUSEADDR)."""
        for sp in sports:
            for dp in dports:
                s = self._connect(dst, dp, src, sp, reuse=True)
                s.sendall(b"h")
                self.held.setdefault(tag, []).append(s)
        return {}

    def udp(self, dst, port, n, sport=0, sports=None, src=None):
        """n request/reply exchanges, each from a new socket (n distinct
        conntrack entries); sports: explicit source ports instead."""
        ports = []
        todo = sports if sports else [sport] * n
        for sp in todo:
            s = socket.socket(_family(dst), socket.SOCK_DGRAM)
            if sp or src:
                s.bind((src or ("::" if ":" in dst else "0.0.0.0"), sp))
            ports.append(_echo(s, dst, port, "UDP"))
        return {"ports": ports}

    def udplite(self, dst, port, n):
        """n UDP-Lite request/reply exchanges, each from a new socket."""
        ports = []
        for _ in range(n):
            s = socket.socket(_family(dst), socket.SOCK_DGRAM,
                              IPPROTO_UDPLITE)
            ports.append(_echo(s, dst, port, "UDP-Lite"))
        return {"ports": ports}

    def udp_blast(self, dst, port, n):
        """n datagrams, each from a new socket (a new source port), no
        reply awaited: n unreplied conntrack entries if nothing answers."""
        sent = 0
        for _ in range(n):
            s = socket.socket(_family(dst), socket.SOCK_DGRAM)
            try:
                s.sendto(b"x", (dst, port))
                sent += 1
            except OSError:
                pass
            s.close()
        return {"sent": sent}

    def tcp_try(self, dst, port, n, wait=0.5):
        """n connection attempts that may fail (a full conntrack table
        drops SYNs); each that succeeds is closed by the server first
        (TIME_WAIT).  Counts both."""
        ok = failed = 0
        for _ in range(n):
            s = socket.socket(_family(dst), socket.SOCK_STREAM)
            s.settimeout(wait)
            try:
                s.connect((dst, port))
                s.sendall(b"c")
                self._drain(s)
                ok += 1
            except OSError:
                failed += 1
            s.close()
        return {"connected": ok, "failed": failed}

    def sctp_init(self, dst, dport, sports):
        """One SCTP INIT from each source port (raw socket: this kernel
        has no SCTP sockets, but conntrack follows SCTP)."""
        s = socket.socket(_family(dst), socket.SOCK_RAW, IPPROTO_SCTP)
        for i, sp in enumerate(sports):
            s.sendto(sctp_init_packet(sp, dport, 0x4e530000 + i + 1),
                     (dst, 0))
        s.close()
        return {}

    def ping(self, dst, ids):
        """One echo request per id, each answered."""
        v6 = ":" in dst
        if v6:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                              socket.IPPROTO_ICMPV6)
            req, rep = 128, 129
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                              socket.IPPROTO_ICMP)
            req, rep = 8, 0
        s.settimeout(0.5)
        for ident in ids:
            got = False
            for attempt in range(6):
                payload = b"natscope"
                hdr = struct.pack("!BBHHH", req, 0, 0, ident, 1)
                if not v6:
                    csum = _checksum(hdr + payload)
                    hdr = struct.pack("!BBHHH", req, 0, csum, ident, 1)
                s.sendto(hdr + payload, (dst, 0))
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline and not got:
                    try:
                        pkt = s.recv(2048)
                    except socket.timeout:
                        break
                    if not v6:
                        pkt = pkt[(pkt[0] & 0x0F) * 4:]
                    if len(pkt) >= 8:
                        t, _, _, i, _ = struct.unpack("!BBHHH", pkt[:8])
                        got = t == rep and i == ident
                if got:
                    break
            if not got:
                raise RuntimeError("no echo reply from %s id %d"
                                   % (dst, ident))
        s.close()
        return {}


def agent():
    a = Agent()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            print(json.dumps({"ok": True}), flush=True)
            return
        try:
            res = getattr(a, op)(**cmd)
            res["ok"] = True
        except Exception as e:  # reported to the driver, which fails
            res = {"ok": False, "error": "%s: %r" % (op, e)}
        print(json.dumps(res), flush=True)


def main(argv):
    if argv[:1] == ["serve"]:
        tcp, udp, udplite = [], [], []
        it = iter(argv[1:])
        for flag in it:
            val = [int(x) for x in next(it).split(",") if x]
            if flag == "--tcp":
                tcp = val
            elif flag == "--udp":
                udp = val
            elif flag == "--udplite":
                udplite = val
            else:
                raise SystemExit("unknown flag %s" % flag)
        serve(tcp, udp, udplite)
    elif argv[:1] == ["agent"]:
        agent()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
