"""Fault-injecting HTTP proxy between an AWS SDK client and moto's server, for the tests.

    python3 firehose_faults.py --upstream http://127.0.0.1:5000 --port-file F \\
        --mode partial|always [--faulty-calls K] [--stats STATS.json]

Listens on 127.0.0.1 on a port chosen by the OS and writes that port (digits and a newline)
to F once it accepts connections. Every request is forwarded to the upstream and its answer
relayed back, except Firehose PutRecordBatch calls (X-Amz-Target:
Firehose_20150804.PutRecordBatch):

    partial  the first K calls (default 3) forward only the records at even indexes and answer
             ServiceUnavailableException for the others (a call of a single record is refused
             whole, without forwarding); later calls are forwarded untouched.
    always   every call is refused whole, nothing is forwarded.

Refused records are answered with status 200, as Firehose does, and counted in FailedPutCount.
With --stats, STATS.json is rewritten after every PutRecordBatch call with the counters
calls, faulty_calls, records_received, records_forwarded and records_refused.
An upstream that cannot be reached is answered with 502 and a ServiceUnavailableException.
Runs until SIGTERM or SIGINT, then exits 0.
"""

import argparse
import http.client
import json
import sys
import threading
import urllib.parse

import testhttp
from testhttp import BadRequest, QuietHandler, write_atomically

PUT_RECORD_BATCH = "Firehose_20150804.PutRecordBatch"
AMZ_JSON = "application/x-amz-json-1.1"
REFUSED = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}
UPSTREAM_TIMEOUT = 120


class UpstreamError(Exception):
    """The upstream could not be reached or gave no readable answer."""


def connection_tokens(headers):
    tokens = set()
    for value in headers.get_all("Connection") or []:
        tokens |= {t.strip().lower() for t in value.split(",") if t.strip()}
    return tokens


class Handler(QuietHandler):
    server_version = "firehose-faults"

    # -- answers ------------------------------------------------------------------------

    def answer(self, status, payload, content_type, reason=None, headers=(), length=None):
        """Send one complete answer; `length` overrides Content-Length (answers to HEAD)."""
        self.send_response_only(status, reason)
        names = {name.lower() for name, _ in headers}
        if "server" not in names:
            self.send_header("Server", self.version_string())
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if length is not None:
            self.send_header("Content-Length", str(length))
        elif not (status == 204 or 100 <= status < 200):
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body:
            self.wfile.write(payload)
        self.wfile.flush()

    def answer_json(self, status, document):
        self.answer(status, json.dumps(document).encode("utf-8"), AMZ_JSON)

    def unavailable(self, error):
        self.answer_json(502, {
            "__type": "ServiceUnavailableException",
            "message": "upstream %s unreachable: %s" % (self.server.upstream_label, error),
        })

    # -- forwarding ---------------------------------------------------------------------

    def upstream_path(self):
        path = self.path
        if "://" in path.split("?", 1)[0]:
            parts = urllib.parse.urlsplit(path)
            path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        return self.server.upstream_base + path

    def forward(self, body, for_rewrite=False):
        """Send the request with `body` upstream; returns (status, reason, headers, body)."""
        drop = HOP_BY_HOP | connection_tokens(self.headers) | {"host", "content-length", "expect"}
        if for_rewrite:
            drop |= {"accept-encoding"}
        conn = self.server.connect()
        try:
            conn.putrequest(self.command, self.upstream_path(),
                            skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in drop:
                    conn.putheader(name, value)
            conn.putheader("Host", self.server.upstream_host)
            if body or self.command not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError("%s: %s" % (type(e).__name__, e)) from e
        finally:
            conn.close()

    def relay(self, status, reason, headers, data):
        drop = HOP_BY_HOP | {"content-length"}
        for name, value in headers:
            if name.lower() == "connection":
                drop |= {t.strip().lower() for t in value.split(",") if t.strip()}
        kept = [(n, v) for n, v in headers if n.lower() not in drop]
        length = None
        if self.command == "HEAD" or status == 304:
            length = next((v for n, v in headers if n.lower() == "content-length"), None)
            if length is None and self.command == "HEAD":
                length = 0
        self.answer(status, data, None, reason, kept, length)

    def handle_any(self):
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.answer(e.status, str(e).encode("utf-8"), "text/plain")
            return
        target = (self.headers.get("X-Amz-Target") or "").strip()
        try:
            if self.command == "POST" and target == PUT_RECORD_BATCH:
                self.put_record_batch(body)
            else:
                self.relay(*self.forward(body))
        except UpstreamError as e:
            self.unavailable(e)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any

    # -- PutRecordBatch -----------------------------------------------------------------

    def put_record_batch(self, body):
        try:
            request = json.loads(body)
            records = request["Records"]
            if not isinstance(records, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.relay(*self.forward(body))
            return

        server = self.server
        count = len(records)
        faulty = server.start_call(count)
        if not faulty:
            try:
                answer = self.forward(body)
            except UpstreamError:
                server.finish_call(forwarded=0, refused=count)
                raise
            server.finish_call(forwarded=count, refused=0)
            self.relay(*answer)
            return

        if server.mode == "always" or count == 1:
            server.finish_call(forwarded=0, refused=count)
            self.answer_json(200, {
                "FailedPutCount": count,
                "Encrypted": False,
                "RequestResponses": [dict(REFUSED) for _ in range(count)],
            })
            return

        kept = records[0::2]
        rewritten = dict(request, Records=kept)
        try:
            status, reason, headers, data = self.forward(
                json.dumps(rewritten).encode("utf-8"), for_rewrite=True)
        except UpstreamError:
            server.finish_call(forwarded=0, refused=count)
            raise
        server.finish_call(forwarded=len(kept), refused=count - len(kept))
        try:
            upstream = json.loads(data) if status == 200 else None
            entries = upstream["RequestResponses"]
            if not isinstance(entries, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.relay(status, reason, headers, data)
            return

        answers, failed, forwarded = [], 0, iter(entries)
        for index in range(count):
            entry = next(forwarded, None) if index % 2 == 0 else None
            if not isinstance(entry, dict) or "RecordId" not in entry:
                entry = entry if isinstance(entry, dict) and entry else dict(REFUSED)
                failed += 1
            answers.append(entry)
        encrypted = upstream.get("Encrypted", False)
        self.answer_json(200, {
            "FailedPutCount": failed,
            "Encrypted": encrypted if isinstance(encrypted, bool) else False,
            "RequestResponses": answers,
        })


class Server(testhttp.Server):

    def __init__(self, address, upstream, mode, faulty_calls, stats_path):
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit("--upstream must be an http:// or https:// URL: %r" % upstream)
        super().__init__(address, Handler)
        self.upstream_label = upstream
        self.upstream_scheme = parts.scheme
        self.upstream_hostname = parts.hostname
        self.upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self.upstream_host = parts.netloc.rsplit("@", 1)[-1]
        self.upstream_base = parts.path.rstrip("/")
        self.mode = mode
        self.faulty_calls = faulty_calls
        self.stats_path = stats_path
        self.lock = threading.Lock()
        self.stats = {"calls": 0, "faulty_calls": 0, "records_received": 0,
                      "records_forwarded": 0, "records_refused": 0}

    def connect(self):
        if self.upstream_scheme == "https":
            return http.client.HTTPSConnection(
                self.upstream_hostname, self.upstream_port, timeout=UPSTREAM_TIMEOUT)
        return http.client.HTTPConnection(
            self.upstream_hostname, self.upstream_port, timeout=UPSTREAM_TIMEOUT)

    def start_call(self, records):
        """Counts one PutRecordBatch call; returns whether faults are injected into it."""
        with self.lock:
            self.stats["calls"] += 1
            self.stats["records_received"] += records
            faulty = records > 0 and (
                self.mode == "always" or self.stats["calls"] <= self.faulty_calls)
            if faulty:
                self.stats["faulty_calls"] += 1
            return faulty

    def finish_call(self, forwarded, refused):
        with self.lock:
            self.stats["records_forwarded"] += forwarded
            self.stats["records_refused"] += refused
            if self.stats_path:
                write_atomically(self.stats_path, json.dumps(self.stats) + "\n")


def main():
    parser = argparse.ArgumentParser(description="Fault-injecting proxy in front of moto.")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--mode", required=True, choices=("partial", "always"))
    parser.add_argument("--faulty-calls", type=int, default=3)
    parser.add_argument("--stats")
    args = parser.parse_args()

    server = Server(("127.0.0.1", 0), args.upstream, args.mode, args.faulty_calls, args.stats)
    return testhttp.serve(server, args.port_file)


if __name__ == "__main__":
    sys.exit(main())
