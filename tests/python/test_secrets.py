"""``fastlane.utils.get_secret`` reads AWS Secrets Manager through the ``aws`` plugin, against
moto's server on loopback (started by the test command)."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid

import pytest

from fastlane.errors import FastlaneError
from fastlane.utils import get_secret

ENDPOINT = os.environ.get("FASTLANE_TEST_AWS_ENDPOINT", "http://127.0.0.1:5000")


def create_secret(name: str, value: str) -> None:
    # moto routes a request to a service by the credential scope of its Authorization header.
    request = urllib.request.Request(
        ENDPOINT,
        data=json.dumps({"Name": name, "SecretString": value}).encode(),
        headers={
            "X-Amz-Target": "secretsmanager.CreateSecret",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/"
            "secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ENDPOINT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_get_secret_returns_the_secrets_json(aws):
    name = f"py/{uuid.uuid4().hex}"
    create_secret(name, json.dumps({"host": "db.internal", "password": "s3cr3t", "port": 3306}))
    assert get_secret(name, "us-east-1") == {
        "host": "db.internal",
        "password": "s3cr3t",
        "port": 3306,
    }


def test_get_secret_errors_are_clear_and_never_quote_the_value(aws):
    with pytest.raises(FastlaneError, match="not found|does not exist|can't find"):
        get_secret(f"py/missing-{uuid.uuid4().hex}", "us-east-1")
    name = f"py/{uuid.uuid4().hex}"
    create_secret(name, "hunter2-not-json")
    with pytest.raises(FastlaneError) as error:
        get_secret(name, "us-east-1")
    assert "not a JSON object" in str(error.value)
    assert "hunter2" not in str(error.value)
