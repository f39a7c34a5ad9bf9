#!/usr/bin/env python3
"""POSTs bucket notifications shaped as Ceph RGW sends them, for end-to-end tests.

  notify.py URL --bucket B --keys-from FILE|--count N [--prefix P] [--event NAME]
            [--etag E] [--concurrency C] [--ok-log FILE] [--seconds S]

Each key gets one POST (one record, as RGW does). The keys that were answered 200 are
appended to --ok-log, one per line, as soon as the answer arrives: those are the
notifications s3hook promised to keep. Connection errors and non-200 answers are counted,
not retried unless --retry says for how long (as a real sender would). Prints "ok=N failed=M" at the end.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse


def record(bucket, key, event, etag, seq):
    return {"Records": [{
        "eventVersion": "2.2", "eventSource": "ceph:s3", "awsRegion": "",
        "eventTime": "2026-11-26T18:00:00.000000Z", "eventName": event,
        "userIdentity": {"principalId": "tester"},
        "requestParameters": {"sourceIPAddress": ""}, "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "t",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "tester"},
                          "arn": "arn:aws:s3:::" + bucket, "id": "x"},
               "object": {"key": key, "size": 0, "eTag": etag, "versionId": "",
                          "sequencer": "%016X" % seq, "metadata": [], "tags": []}},
        "eventId": "%d.%d" % (seq, seq), "opaqueData": ""}]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--bucket", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--keys-from")
    p.add_argument("--prefix", default="k/")
    p.add_argument("--event", default="ObjectRemoved:Delete")
    p.add_argument("--etag", default="")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--ok-log")
    p.add_argument("--retry", type=float, default=0,
                   help="seconds to keep retrying a notification that was not answered 200")
    p.add_argument("--rate", type=float, default=0, help="notifications per second (0: flat out)")
    p.add_argument("--mix", help="prefixes by weight, e.g. skip/:70,count/:25,fail/:5")
    a = p.parse_args()
    if a.keys_from:
        with open(a.keys_from) as f:
            keys = [line.rstrip("\n") for line in f if line.strip()]
    elif a.mix:
        wheel = []
        for part in a.mix.split(","):
            prefix, weight = part.rsplit(":", 1)
            wheel += [prefix] * int(weight)
        keys = ["%s%08d" % (wheel[i % len(wheel)], i) for i in range(a.count)]
    else:
        keys = ["%s%06d" % (a.prefix, i) for i in range(a.count)]
    start = time.time()
    u = urllib.parse.urlsplit(a.url)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    todo = list(enumerate(keys))
    log = open(a.ok_log, "a") if a.ok_log else None

    def worker():
        conn = None
        while True:
            with lock:
                if not todo:
                    break
                i, key = todo.pop(0)
            if a.rate:
                wait = start + i / a.rate - time.time()
                if wait > 0:
                    time.sleep(wait)
            body = json.dumps(record(a.bucket, key, a.event, a.etag, i + 1))
            deadline = time.time() + a.retry
            while True:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                    conn.request("POST", path, body, {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    ok = r.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn = None
                if ok or time.time() >= deadline:
                    break
                time.sleep(0.05)
            with lock:
                counts["ok" if ok else "failed"] += 1
                if ok and log:
                    log.write(key + "\n")
                    log.flush()

    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("ok=%d failed=%d" % (counts["ok"], counts["failed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
