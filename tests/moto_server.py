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

import threading
from typing import Iterator

import pytest

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_REGION",
         "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")


class _OneAtATime:
    """WSGI middleware: one request inside moto at a time (each DynamoDB request is atomic on AWS)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        wsgi = getattr(server, "_server", None)
        if wsgi is not None and hasattr(wsgi, "app"):
            wsgi.app = _OneAtATime(wsgi.app)
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
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
