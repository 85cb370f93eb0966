"""A moto server on 127.0.0.1 for tests that talk to AWS exactly as to AWS: boto3 with endpoint_url.

tests/conftest.py lists this module in ``pytest_plugins``, so every test module can ask for the fixtures
(``moto_server``, ``moto_endpoint``). ``moto_server`` is started once per session on a free
port and stopped at the end; ``moto_endpoint`` gives each test fake credentials, no instance metadata and
no developer profile, and yields the endpoint URL.

moto handles requests on several threads without a lock, and its TransactWriteItems snapshots whole tables
and restores them when a condition fails, which would undo writes other threads made in between. Real
DynamoDB applies each request atomically, so the server here runs one request at a time.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.local_moto import FAKE_ENV, UNSET, start_moto


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    server, url = start_moto()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(moto_server, tmp_path_factory, monkeypatch) -> Iterator[str]:
    """Fake credentials for this test (never a developer's real profile), and the endpoint URL.

    The environment is the same for every test, so boto3 sessions and clients cached by hyper.aws.session
    are reused (creating them costs ~0.1 s); a test that changes credentials gets new ones automatically.
    """
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    aws_files = tmp_path_factory.getbasetemp() / "aws-empty"  # never a developer's ~/.aws
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_files / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_files / "credentials"))
    yield moto_server
