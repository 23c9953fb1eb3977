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
import os
import signal
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_LINE = 65536
MAX_TRAILERS = 100
HEX_DIGITS = b"0123456789abcdefABCDEF"


class BadRequest(Exception):
    """The request body could not be read as framed by its headers."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "slack-receiver"

    def version_string(self):
        return self.server_version

    def log_request(self, code="-", size="-"):
        pass

    # -- request body -------------------------------------------------------------------

    def read_body(self):
        codings = []
        for value in self.headers.get_all("Transfer-Encoding") or []:
            codings += [c.strip().lower() for c in value.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if codings:
            if codings != ["chunked"]:
                raise BadRequest(501, "unsupported transfer coding")
            return self.read_chunked()
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return b""
        if len(lengths) != 1:
            raise BadRequest(400, "conflicting Content-Length")
        text = lengths.pop()
        if not text.isdigit():
            raise BadRequest(400, "bad Content-Length")
        return self.read_exactly(int(text))

    def read_exactly(self, n):
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise BadRequest(400, "request body cut short")
        return data

    def read_line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise BadRequest(400, "bad chunked framing")
        return line

    def read_chunked(self):
        parts = []
        while True:
            size_text = self.read_line().split(b";", 1)[0].strip()
            if not size_text or size_text.strip(HEX_DIGITS):
                raise BadRequest(400, "bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            parts.append(self.read_exactly(size))
            if self.read_line().strip():
                raise BadRequest(400, "bad chunked framing")
        for _ in range(MAX_TRAILERS):
            if not self.read_line().strip():
                return b"".join(parts)
        raise BadRequest(400, "too many trailers")

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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

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

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    write_atomically(args.port_file, "%d\n" % server.server_address[1])
    while not stop.wait(0.5):
        if not worker.is_alive():
            return 1
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
