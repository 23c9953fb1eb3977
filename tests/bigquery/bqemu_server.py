"""Starts the bqemulator BigQuery emulator (REST + Storage Read/Write gRPC) offline.

bqemulator loads DuckDB's `spatial` extension at start, which it downloads from the internet;
without network access that fails and the server does not start. This launcher skips the
extension (GEOGRAPHY columns are then unsupported by the emulator) and passes its arguments to
the emulator's own command line, e.g.

    python bqemu_server.py start --rest-port 9050 --grpc-port 9060 --project test-project
"""

import sys

import bqemulator.storage.engine as engine

engine.DuckDBEngine._load_spatial = lambda self: None

from bqemulator.cli import main  # noqa: E402  (after the patch above)

sys.exit(main())
