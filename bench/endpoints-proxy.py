#!/usr/bin/env python3
"""endpoints-proxy.py: a load balancer driven by endpoint updates, for
bench/quiet.sh (issue 15). Python 3 standard library only.

It routes the way kube-proxy, an ingress controller or a service mesh
that follows Kubernetes endpoints does: round robin over its list of
backends, keep-alive connections to them, no retries, and never a health
check of its own. It learns that a backend is going away only when told,
and acts on it after a random propagation delay (uniform between
--delay-min and --delay-max, 1-5 s by default, from --seed), the way an
endpoint update reaches each proxy at its own time. Until then it keeps
sending requests there; a request that meets a closed port or a closed
connection is answered 502, as a proxy without retries does.

  endpoints-proxy.py --listen PORT --control PORT --seed N --log FILE
                     [--delay-min S] [--delay-max S] [--source ADDR]
                     [NAME=HOST:PORT ...]

Both ports are on 127.0.0.1. The connections to the backends come from
--source, 127.0.0.2 by default, and not from 127.0.0.1: drainit's quiet
drain (--drain-until-quiet) never counts a peer at exactly 127.0.0.1, ::1
or ::ffff:127.0.0.1 as traffic, since those are its own checks and the
probes run inside the container, while any other 127/8 address counts,
as Istio's sidecar at 127.0.0.6 does. From 127.0.0.1 the proxy's
requests would be invisible to the quiet drain and every quiet wait would
end at once. Linux routes all of 127.0.0.0/8 to loopback, so the traffic
stays there; --source must be in it.

Control: one command per TCP connection, one line, one line of answer:

  add NAME HOST:PORT   route to it from now on                  -> ok
  gone NAME            draw the delay, remove NAME after it      -> the delay, s
  wait-removed NAME    block until NAME is removed               -> Unix time
  list                 the backends routed to now               -> NAME ...

On removal the backend's idle connections are closed, and the ones in use
are closed when their request is done. The log (--log) has a JSON line
per event: start, added, gone (with the delay drawn), removed, and at
exit the requests and 502s per backend.
"""

import argparse
import http.client
import http.server
import ipaddress
import json
import random
import signal
import socketserver
import sys
import threading
import time

BACKEND_TIMEOUT = 5.0
FORWARDED = ("Content-Type",)


class Log:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def event(self, kind, **fields):
        line = json.dumps({"t": round(time.time(), 6), "event": kind, **fields})
        with self.lock:
            self.file.write(line + "\n")


class Backend:
    """One endpoint and its idle keep-alive connections."""

    def __init__(self, name, host, port, source):
        self.name, self.host, self.port = name, host, port
        # (address, 0): any free port on the source address (see --source).
        self.source = (source, 0)
        self.idle = []
        self.removed = False
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = 0

    def connection(self):
        with self.lock:
            self.requests += 1
            if self.idle:
                return self.idle.pop()
        return http.client.HTTPConnection(
            self.host, self.port, timeout=BACKEND_TIMEOUT, source_address=self.source
        )

    def release(self, conn, reusable):
        with self.lock:
            if reusable and not self.removed:
                self.idle.append(conn)
                return
        conn.close()

    def forward(self, path, host):
        conn = self.connection()
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            with self.lock:
                self.errors += 1
            raise
        self.release(conn, not response.will_close)
        return response, body

    def remove(self):
        with self.lock:
            self.removed = True
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class Table:
    """The routed backends, as the last endpoint update left them."""

    def __init__(self, log, rng, delay_min, delay_max, source):
        self.log, self.rng, self.source = log, rng, source
        self.delay_min, self.delay_max = delay_min, delay_max
        self.lock = threading.Lock()
        self.routed = []
        self.all = {}
        self.removed_at = {}
        self.changed = threading.Condition(self.lock)
        self.turn = 0

    def pick(self):
        with self.lock:
            if not self.routed:
                return None
            self.turn += 1
            return self.routed[self.turn % len(self.routed)]

    def add(self, name, host, port):
        backend = Backend(name, host, port, self.source)
        with self.lock:
            self.all[name] = backend
            self.routed.append(backend)
        self.log.event("added", backend=name, addr=f"{host}:{port}")

    def gone(self, name):
        with self.lock:
            if name not in self.all or name in self.removed_at:
                return None
            delay = self.rng.uniform(self.delay_min, self.delay_max)
        self.log.event("gone", backend=name, delay=round(delay, 3))
        timer = threading.Timer(delay, self.remove, (name,))
        timer.daemon = True
        timer.start()
        return delay

    def remove(self, name):
        with self.lock:
            backend = self.all[name]
            self.routed = [b for b in self.routed if b is not backend]
            self.removed_at[name] = time.time()
            self.changed.notify_all()
        backend.remove()
        self.log.event("removed", backend=name)

    def wait_removed(self, name):
        with self.lock:
            if name not in self.all:
                return None
            self.changed.wait_for(lambda: name in self.removed_at)
            return self.removed_at[name]

    def names(self):
        with self.lock:
            return [b.name for b in self.routed]

    def totals(self):
        with self.lock:
            return {b.name: {"requests": b.requests, "errors": b.errors} for b in self.all.values()}


def split_addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def frontend(table):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            backend = table.pick()
            if backend is None:
                self.answer(503, b"no backend\n", "text/plain")
                return
            try:
                response, body = backend.forward(self.path, self.headers.get("Host", ""))
            except (OSError, http.client.HTTPException) as e:
                self.answer(502, f"{backend.name}: {e!r}\n".encode(), "text/plain")
                return
            self.answer(response.status, body, response.getheader("Content-Type"))

        def answer(self, status, body, content_type):
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def control(table):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            words = self.rfile.readline().decode(errors="replace").split()
            self.wfile.write((self.run(words) + "\n").encode())

        def run(self, words):
            match words:
                case ["add", name, addr]:
                    table.add(name, *split_addr(addr))
                    return "ok"
                case ["gone", name]:
                    delay = table.gone(name)
                    return "unknown or already gone" if delay is None else f"{delay:.3f}"
                case ["wait-removed", name]:
                    at = table.wait_removed(name)
                    return "unknown" if at is None else f"{at:.6f}"
                case ["list"]:
                    return " ".join(table.names())
            return "usage: add NAME HOST:PORT | gone NAME | wait-removed NAME | list"

    return Handler


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ControlServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--delay-min", type=float, default=1.0)
    parser.add_argument("--delay-max", type=float, default=5.0)
    # Not 127.0.0.1: see the top of this file.
    parser.add_argument("--source", default="127.0.0.2",
                        help="the address the connections to the backends come from")
    parser.add_argument("backends", nargs="*", metavar="NAME=HOST:PORT")
    args = parser.parse_args()
    if ipaddress.ip_address(args.source) not in ipaddress.ip_network("127.0.0.0/8"):
        parser.error(f"--source {args.source}: the bench keeps all traffic on 127.0.0.0/8")
    log = Log(args.log)
    table = Table(log, random.Random(args.seed), args.delay_min, args.delay_max, args.source)
    for spec in args.backends:
        name, _, addr = spec.partition("=")
        table.add(name, *split_addr(addr))
    front = Server(("127.0.0.1", args.listen), frontend(table))
    ctl = ControlServer(("127.0.0.1", args.control), control(table))
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    log.event("start", seed=args.seed, delay_min=args.delay_min, delay_max=args.delay_max,
              source=args.source)
    # SIGTERM ends it like Ctrl-C: through the finally below, with totals.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        front.serve_forever()
    finally:
        log.event("totals", backends=table.totals())


if __name__ == "__main__":
    main()
