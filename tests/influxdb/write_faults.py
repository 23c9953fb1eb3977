"""Fault-injecting HTTP proxy in front of an InfluxDB (or VictoriaMetrics) server, for the tests.

    python3 write_faults.py --upstream http://127.0.0.1:8086 --port-file F --stats STATS.json \\
        [--mode none|status|drop] [--faulty-writes K]

Listens on 127.0.0.1 on a port chosen by the OS and writes that port (digits and a newline)
to F once it accepts connections. Every request is forwarded to the upstream and its answer
relayed back, except write requests (POST to a path ending in ``/write``) with a non-empty
body, of which the first K (default 3; every one when K is negative) get a fault instead:

    none    no fault;
    status  answered ``503 Service Unavailable`` with an InfluxDB JSON error, not forwarded;
    drop    the connection is closed without an answer, not forwarded.

STATS.json is rewritten after every write request with ``writes`` (requests seen),
``faulty`` and ``forwarded``, and ``requests``: for each write, its path, query string,
``Authorization`` and ``Content-Encoding`` headers, body size and whether it was forwarded.
Runs until SIGTERM or SIGINT, then exits 0.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "aws"))

import testhttp  # noqa: E402
from testhttp import BadRequest, QuietHandler, write_atomically  # noqa: E402

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}


class State:
    def __init__(self, upstream, mode, faulty, stats):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.mode = mode
        self.faulty = faulty
        self.stats_path = stats
        self.lock = threading.Lock()
        self.stats = {"writes": 0, "faulty": 0, "forwarded": 0, "requests": []}

    def next_write_is_faulty(self):
        with self.lock:
            self.stats["writes"] += 1
            if self.mode == "none":
                return False
            if self.faulty < 0 or self.stats["faulty"] < self.faulty:
                self.stats["faulty"] += 1
                return True
            return False

    def record(self, entry):
        with self.lock:
            if entry["forwarded"]:
                self.stats["forwarded"] += 1
            self.stats["requests"].append(entry)
            write_atomically(self.stats_path, json.dumps(self.stats))


def make_handler(state):
    class Handler(QuietHandler):
        def forward(self, body):
            conn = http.client.HTTPConnection(
                state.upstream.hostname, state.upstream.port, timeout=120
            )
            try:
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP
                }
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError as e:
                data = json.dumps({"error": "upstream unreachable: %s" % e}).encode()
                self.send_response(502)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                conn.close()

        def handle_any(self):
            try:
                body = self.read_body()
            except BadRequest as e:
                self.send_error(e.status, str(e))
                return
            path = urllib.parse.urlsplit(self.path)
            is_write = self.command == "POST" and path.path.endswith("/write") and body
            if not is_write:
                self.forward(body)
                return
            faulty = state.next_write_is_faulty()
            state.record({
                "path": path.path,
                "query": path.query,
                "authorization": self.headers.get("Authorization"),
                "content_encoding": self.headers.get("Content-Encoding"),
                "bytes": len(body),
                "forwarded": not faulty,
            })
            if not faulty:
                self.forward(body)
            elif state.mode == "status":
                data = b'{"error":"the server is busy"}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.close_connection = True
                self.connection.shutdown(2)

        do_GET = do_POST = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--mode", choices=["none", "status", "drop"], default="none")
    parser.add_argument("--faulty-writes", type=int, default=3)
    args = parser.parse_args()
    state = State(args.upstream, args.mode, args.faulty_writes, args.stats)
    write_atomically(args.stats, json.dumps(state.stats))
    server = testhttp.Server(("127.0.0.1", 0), make_handler(state))
    return testhttp.serve(server, args.port_file)


if __name__ == "__main__":
    sys.exit(main())
