"""What the tests' small HTTP servers share (``firehose_faults.py``, ``slack_receiver.py``):
reading request bodies framed by Content-Length or chunked encoding, a quiet handler, a
threading server that ignores dropped connections, atomic file writes, and the main loop that
publishes the port and runs until SIGTERM or SIGINT."""

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
    """Writes ``text`` to ``path`` so that a reader never sees a partial file."""
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


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler without per-request logging, reading whole bodies."""

    protocol_version = "HTTP/1.1"

    def version_string(self):
        return self.server_version

    def log_request(self, code="-", size="-"):
        pass

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


class Server(ThreadingHTTPServer):
    """A threading server whose clients may hang up at any time."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def serve(server, port_file):
    """Serves until SIGTERM or SIGINT, once the port is written to ``port_file``; returns the
    exit status."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    write_atomically(port_file, "%d\n" % server.server_address[1])
    while not stop.wait(0.5):
        if not worker.is_alive():
            return 1
    server.shutdown()
    server.server_close()
    return 0
