"""Stand-in for Slack incoming webhooks, for the integration tests.

    python3 slack_receiver.py --port-file F --out OUT.jsonl

Listens on 127.0.0.1 on a port chosen by the OS and writes that port (digits and a newline)
to F once it accepts connections. Every POST is appended to OUT.jsonl as one JSON line
{"path", "content_type", "body", "status"}, where body is the parsed JSON body (or the raw
text when it is not JSON) and status the code answered. Answers, by the request path:

    .../fail       404 "no_service"
    .../ratelimit  first request on that path 429 "rate_limited" (Retry-After: 1), then as below
    .../flaky      first request on that path 500 "internal_error", then as below
    anything else  400 "invalid_payload" when the body is not a JSON object with a "text" or
                   "blocks" key, else 200 "ok"

Runs until SIGTERM or SIGINT, then exits 0.
"""

import argparse
import json
import sys
import threading

import testhttp
from testhttp import BadRequest, QuietHandler


class Handler(QuietHandler):
    server_version = "slack-receiver"

    # -- answers ------------------------------------------------------------------------

    def answer(self, status, text, headers=()):
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def do_POST(self):
        try:
            raw = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.answer(e.status, str(e))
            return
        path = self.path
        route = path.split("?", 1)[0].rstrip("/")

        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
            parsed = True
        except ValueError:
            body = text
            parsed = False

        extra = ()
        if route.endswith("/fail"):
            status, reply = 404, "no_service"
        elif route.endswith("/ratelimit") and self.server.first_time(route):
            status, reply, extra = 429, "rate_limited", (("Retry-After", "1"),)
        elif route.endswith("/flaky") and self.server.first_time(route):
            status, reply = 500, "internal_error"
        elif not (parsed and isinstance(body, dict) and ("text" in body or "blocks" in body)):
            status, reply = 400, "invalid_payload"
        else:
            status, reply = 200, "ok"

        self.server.record({
            "path": path,
            "content_type": self.headers.get("Content-Type"),
            "body": body,
            "status": status,
        })
        self.answer(status, reply, extra)

    def not_allowed(self):
        try:
            self.read_body()
        except BadRequest:
            self.close_connection = True
        self.answer(405, "method_not_allowed", (("Allow", "POST"),))

    do_GET = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = not_allowed


class Server(testhttp.Server):

    def __init__(self, address, out_path):
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.seen = set()
        self.out = open(out_path, "a", encoding="utf-8")

    def first_time(self, route):
        with self.lock:
            if route in self.seen:
                return False
            self.seen.add(route)
            return True

    def record(self, entry):
        line = json.dumps(entry) + "\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()


    def server_close(self):
        super().server_close()
        with self.lock:
            self.out.close()


def main():
    parser = argparse.ArgumentParser(description="Stand-in for Slack incoming webhooks.")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    server = Server(("127.0.0.1", 0), args.out)
    return testhttp.serve(server, args.port_file)


if __name__ == "__main__":
    sys.exit(main())
