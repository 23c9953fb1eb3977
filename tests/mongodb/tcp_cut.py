"""A TCP proxy for the tests that cuts connections, to play a server lost in the middle of a read.

    python3 tcp_cut.py --upstream 127.0.0.1:27017 --port-file F --stats STATS.json \\
        --cut-after BYTES [--cuts N]

Listens on 127.0.0.1 on a port chosen by the OS and writes that port (digits and a newline) to
F once it accepts connections. Bytes are relayed both ways; once a connection has relayed more
than BYTES from the upstream to the client, it is closed, for the first N such connections
(default 1; every one when N is negative). STATS.json holds ``connections`` and ``cuts``.
Runs until SIGTERM or SIGINT, then exits 0.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "aws"))

from testhttp import write_atomically  # noqa: E402


class State:
    def __init__(self, cut_after, cuts, stats):
        self.cut_after = cut_after
        self.cuts = cuts
        self.stats_path = stats
        self.lock = threading.Lock()
        self.stats = {"connections": 0, "cuts": 0}
        self.save()

    def save(self):
        write_atomically(self.stats_path, json.dumps(self.stats))

    def new_connection(self):
        with self.lock:
            self.stats["connections"] += 1
            self.save()

    def may_cut(self):
        with self.lock:
            if self.cuts < 0 or self.stats["cuts"] < self.cuts:
                self.stats["cuts"] += 1
                self.save()
                return True
            return False


def relay(state, client, upstream_address):
    try:
        upstream = socket.create_connection(upstream_address, timeout=30)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    state.new_connection()
    done = threading.Event()

    def close_both():
        done.set()
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def client_to_upstream():
        try:
            while not done.is_set():
                data = client.recv(65536)
                if not data:
                    break
                upstream.sendall(data)
        except OSError:
            pass
        close_both()

    threading.Thread(target=client_to_upstream, daemon=True).start()
    relayed = 0
    try:
        while not done.is_set():
            data = upstream.recv(65536)
            if not data:
                break
            relayed += len(data)
            if relayed > state.cut_after and state.may_cut():
                client.sendall(data[: max(0, len(data) // 2)])
                break
            client.sendall(data)
    except OSError:
        pass
    close_both()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--cut-after", type=int, required=True)
    parser.add_argument("--cuts", type=int, default=1)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    state = State(args.cut_after, args.cuts, args.stats)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def accept():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=relay, args=(state, client, (host, int(port))),
                             daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    write_atomically(args.port_file, "%d\n" % listener.getsockname()[1])
    stop.wait()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
