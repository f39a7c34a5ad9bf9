#!/usr/bin/env python3
"""A small HTTP/1.1 proxy that misbehaves on cue, for end-to-end tests.

It sits between s3hook and a real server (the local Ceph RGW) and forwards
requests, except where a rule says otherwise. Rules are read from a JSON file
given with --rules, re-read on every request, so a test can change them while
traffic flows:

  {"rate": 1048576,            # bytes/s for request bodies (0: unlimited)
   "faults": [                  # applied in order to matching requests
     {"method": "PUT", "path": "part", "status": 503, "times": 2},
     {"method": "GET", "stall": 10},        # send the head, then hang
     {"reset": true, "times": 1}            # close the connection at once
   ]}

"path" matches a substring of the request target; "times" counts down and the
rule stops applying at 0 (omit it for always). Every request is appended to
--log as one line: METHOD TARGET -> STATUS. Listens on 127.0.0.1 only.
"""
import argparse
import asyncio
import json
import os
import sys


class Rules:
    def __init__(self, path):
        self.path = path
        self.used = {}

    def load(self):
        if not self.path or not os.path.exists(self.path):
            return {}
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def match(self, method, target):
        rules = self.load()
        for i, r in enumerate(rules.get("faults", [])):
            if r.get("method") and r["method"] != method:
                continue
            if r.get("path") and r["path"] not in target:
                continue
            key = (i, json.dumps(r, sort_keys=True))
            if "times" in r:
                used = self.used.get(key, 0)
                if used >= r["times"]:
                    continue
                self.used[key] = used + 1
            return r
        return None

    def rate(self):
        return self.load().get("rate", 0)


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return head, lines[0], lines[1:]


def header(lines, name):
    name = name.lower()
    for line in lines:
        if ":" in line and line.split(":", 1)[0].strip().lower() == name:
            return line.split(":", 1)[1].strip()
    return None


async def copy_body(reader, writer, length, rate):
    left = length
    while left > 0:
        chunk = await reader.read(min(65536, left))
        if not chunk:
            raise ConnectionError("body ended early")
        writer.write(chunk)
        await writer.drain()
        left -= len(chunk)
        if rate:
            await asyncio.sleep(len(chunk) / rate)


async def copy_chunked(reader, writer):
    while True:
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        size = int(line.split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        writer.write(data)
        if size == 0:
            await writer.drain()
            return


async def forward_response(up_r, writer, method):
    head, status_line, lines = await read_head(up_r)
    writer.write(head)
    status = int(status_line.split()[1])
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        await writer.drain()
        return status
    te = header(lines, "transfer-encoding")
    if te and "chunked" in te.lower():
        await copy_chunked(up_r, writer)
    else:
        await copy_body(up_r, writer, int(header(lines, "content-length") or 0), 0)
    return status


async def fault(rule, reader, writer, lines, method):
    if rule.get("reset"):
        writer.transport.abort()
        return "reset"
    if "stall" in rule:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(rule["stall"])
        writer.transport.abort()
        return "stall"
    # Answer with an error: read (and drop) the request body first.
    length = int(header(lines, "content-length") or 0)
    while length > 0:
        chunk = await reader.read(min(65536, length))
        if not chunk:
            break
        length -= len(chunk)
    status = rule.get("status", 500)
    body = ("<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>injected</Message></Error>"
            % rule.get("code", "InternalError" if status == 500 else "SlowDown")).encode()
    writer.write(b"HTTP/1.1 %d Injected\r\nContent-Type: application/xml\r\n"
                 b"Content-Length: %d\r\n\r\n" % (status, len(body)) + body)
    await writer.drain()
    return str(status)


async def handle(reader, writer, args, rules):
    up_r = up_w = None
    try:
        while True:
            try:
                head, request_line, lines = await read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            method, target = request_line.split()[0], request_line.split()[1]
            rule = rules.match(method, target)
            if rule:
                outcome = await fault(rule, reader, writer, lines, method)
                log(args, method, target, outcome)
                if outcome in ("reset", "stall"):
                    return
                continue
            if up_w is None:
                up_r, up_w = await asyncio.open_connection(args.upstream_host, args.upstream_port)
            up_w.write(head)
            await copy_body(reader, up_w, int(header(lines, "content-length") or 0), rules.rate())
            status = await forward_response(up_r, writer, method)
            log(args, method, target, str(status))
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass
    finally:
        for w in (writer, up_w):
            if w is not None:
                w.close()


def log(args, method, target, outcome):
    if args.log:
        with open(args.log, "a") as f:
            f.write("%s %s -> %s\n" % (method, target, outcome))


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="host:port of the real server")
    p.add_argument("--rules")
    p.add_argument("--log")
    args = p.parse_args()
    args.upstream_host, port = args.upstream.rsplit(":", 1)
    args.upstream_port = int(port)
    rules = Rules(args.rules)
    server = await asyncio.start_server(lambda r, w: handle(r, w, args, rules),
                                        "127.0.0.1", args.port)
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
