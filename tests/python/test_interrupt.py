"""Ctrl-C during a run stops it cleanly: the target is aborted and KeyboardInterrupt raised."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time


def test_ctrl_c_stops_the_run_and_aborts_the_target(tmp_path):
    marker = tmp_path / "events.txt"
    script = tmp_path / "slow.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import signal
            import time
            from fastlane import Pipeline, Source, Target

            # As in a terminal: a test runner started in the background (a non-interactive
            # shell's `&`) hands its children SIGINT ignored, and Python then keeps it ignored.
            signal.signal(signal.SIGINT, signal.default_int_handler)

            class Slow(Source):
                source_type = "slow"
                def extract(self):
                    time.sleep(0.05)
                    return [{{"x": 1}}]

            class Mark(Target):
                target_type = "mark"
                def load(self, df):
                    pass
                def commit(self):
                    open({str(marker)!r}, "a").write("commit\\n")
                def abort(self):
                    open({str(marker)!r}, "a").write("abort\\n")

            p = Pipeline(source=Slow, target=Mark, configuration={{
                "replication_mode": "FULL_TABLE", "source": {{"slow": {{}}}}, "target": {{"mark": {{}}}}}},
                progress="off")
            print("running", flush=True)
            try:
                p.run()
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                raise SystemExit(130)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    time.sleep(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130, err
    assert "interrupted" in out
    assert marker.read_text().split() == ["abort"]
