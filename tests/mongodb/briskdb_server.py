"""A MongoDB wire-protocol server for the tests: BriskDB (PyPI ``briskdb``) over a data folder.

    python briskdb_server.py DATA_DIR HOST:PORT

Serves until SIGTERM or SIGINT. Put DATA_DIR on tmpfs: on disk every write waits for fsync.
"""

import signal
import sys
import threading

import briskdb


def main():
    data, address = sys.argv[1], sys.argv[2]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with briskdb.open(data, shards=2, documents=True) as db:
        with db.serve(mongo=address, admin=None) as server:
            print("mongo on", server.mongo_address, flush=True)
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
