"""Python runs send their errors and summary to Slack when the configuration asks, as the
command does (a local receiver stands in for Slack's incoming webhooks)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastlane import Pipeline, Source

RECEIVER = Path(__file__).resolve().parents[1] / "aws" / "slack_receiver.py"


class Letters(Source):
    source_type = "letters_for_slack"
    schema = {"letter": "utf8"}

    def __init__(self, configuration):
        super().__init__(configuration)
        self.done = False

    def extract(self):
        if self.done:
            return []
        self.done = True
        return [{"letter": c} for c in "abc"]


class Broken(Source):
    source_type = "broken_for_slack"
    schema = {"letter": "utf8"}

    def extract(self):
        raise RuntimeError("the upstream API answered 503")


@pytest.fixture
def receiver(tmp_path):
    port_file = tmp_path / "port"
    out = tmp_path / "posts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER), "--port-file", str(port_file), "--out", str(out)]
    )
    deadline = time.monotonic() + 20
    while not port_file.exists():
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.05)
    port = int(port_file.read_text())

    def posts():
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text().splitlines()]

    yield f"http://127.0.0.1:{port}/services/T/B/py", posts
    proc.terminate()
    proc.wait(timeout=10)


def config(name, source_id, url, tmp_path):
    return {
        "name": name,
        "replication_mode": "FULL_TABLE",
        "source": {source_id: {}},
        "target": {"file": {"path": str(tmp_path / "out"), "format": "parquet"}},
        "logs": {"error_log_to_slack": True, "slack": {"webhook_url": url}},
        "monitoring": {"enabled": False},
    }


def test_a_python_run_posts_its_summary(receiver, tmp_path):
    url, posts = receiver
    Pipeline(
        source=Letters,
        target="file",
        configuration=config("py-slack", "letters_for_slack", url, tmp_path),
        progress="off",
    ).run()
    sent = posts()
    assert len(sent) == 1, sent
    assert sent[0]["body"]["text"].startswith(":white_check_mark: *py-slack* run `")
    assert "succeeded: 3 rows" in sent[0]["body"]["text"]


def test_a_failing_python_source_posts_the_error(receiver, tmp_path):
    url, posts = receiver
    with pytest.raises(Exception, match="503"):
        Pipeline(
            source=Broken,
            target="file",
            configuration=config("py-slack-broken", "broken_for_slack", url, tmp_path),
            progress="off",
        ).run()
    texts = [p["body"]["text"] for p in posts()]
    assert len(texts) == 2, texts
    assert "the upstream API answered 503" in texts[0]
    assert texts[1].startswith(":x: *py-slack-broken* run `") and "failed" in texts[1]
