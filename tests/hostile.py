#!/usr/bin/env python3
"""Hostile clients for the listener, for end-to-end tests. Each prints one line of results.

  hostile.py slowloris HOST PORT CONNS SECONDS   many connections sending a byte a second
  hostile.py hold HOST PORT CONNS SECONDS        open connections and hold them, sending nothing;
                                                 then count those the server left open (5 s grace)
  hostile.py headers HOST PORT                   one request with 10,000 headers (and one huge)
  hostile.py chunked HOST PORT SECONDS           a chunked body that never ends
  hostile.py health URL SECONDS                  polls URL; prints the slowest answer in ms
"""
import socket
import sys
import time
import urllib.request


def connect(host, port):
    s = socket.socket()
    s.settimeout(5)
    s.connect((host, port))
    return s


def slowloris(host, port, conns, seconds):
    socks, closed = [], 0
    for _ in range(conns):
        try:
            s = connect(host, port)
            s.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            closed += 1
    end = time.time() + seconds
    while time.time() < end and socks:
        for s in list(socks):
            try:
                s.send(b"X-a: b\r\n")
            except OSError:
                socks.remove(s)
                closed += 1
        time.sleep(1)
    print("open=%d closed_by_server=%d" % (len(socks), closed))


def hold(host, port, conns, seconds):
    """Holds the connections SECONDS, then gives the server up to 5 s more to have closed
    them all (its idle timeout runs from each one's accept, and a busy machine accepts the
    last of 10,000 late); reports how many it never closed."""
    socks, refused = [], 0
    for _ in range(conns):
        try:
            socks.append(connect(host, port))
        except OSError:
            refused += 1
    opened = len(socks)
    time.sleep(seconds)
    for s in socks:
        s.setblocking(False)
    end = time.time() + 5
    while True:
        alive = []
        for s in socks:
            try:
                if s.recv(1) != b"":
                    alive.append(s)
                else:
                    s.close()
            except BlockingIOError:
                alive.append(s)
            except OSError:
                s.close()
        socks = alive
        if not socks or time.time() >= end:
            break
        time.sleep(0.5)
    for s in socks:
        s.close()
    print("opened=%d refused=%d still_open=%d" % (opened, refused, len(socks)))


def status_of(s):
    if s is None:
        return "closed"
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    line = data.split(b"\r\n")[0].decode("latin-1")
    return line.split()[1] if len(line.split()) > 1 else "closed"


def headers(host, port):
    s = s2 = None
    try:
        s = connect(host, port)
        s.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
        for i in range(10000):
            s.send(b"X-Flood-%d: %s\r\n" % (i, b"v" * 100))
        s.send(b"Content-Length: 2\r\n\r\n{}")
    except OSError:
        pass
    a = status_of(s)
    try:
        s2 = connect(host, port)
        s2.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * (1 << 20) + b"\r\n\r\n")
    except OSError:
        pass
    print("many=%s huge=%s" % (a, status_of(s2)))


def chunked(host, port, seconds):
    s = None
    end, sent = time.time() + seconds, 0
    try:
        s = connect(host, port)
        s.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        while time.time() < end:
            s.send(b"1000\r\n" + b"[" * 4096 + b"\r\n")
            sent += 4096
    except OSError:
        pass
    print("status=%s sent=%d" % (status_of(s), sent))


def health(url, seconds):
    worst, failures, n = 0.0, 0, 0
    end = time.time() + seconds
    while time.time() < end:
        t = time.time()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
                if r.status != 200:
                    failures += 1
        except OSError:
            failures += 1
        worst = max(worst, time.time() - t)
        n += 1
        time.sleep(0.05)
    print("polls=%d failures=%d worst_ms=%.0f" % (n, failures, worst * 1000))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "slowloris":
        slowloris(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "hold":
        hold(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "headers":
        headers(args[0], int(args[1]))
    elif cmd == "chunked":
        chunked(args[0], int(args[1]), float(args[2]))
    elif cmd == "health":
        health(args[0], float(args[1]))
    else:
        sys.exit(__doc__)
