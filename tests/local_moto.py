"""moto's server on 127.0.0.1, as the tests and the benchmarks start it (no pytest here: scripts import it).

Real DynamoDB applies each request atomically; moto handles requests on several threads without a lock,
and its TransactWriteItems snapshots whole tables and restores them when a condition fails, which would
undo writes other threads made in between. So the server here runs one request at a time.

Those snapshots also never went away: moto's models register every instance they create, deep copies
included, in a class list (``instances_tracked``, read only by its /moto-api/data.json page), so each
transaction kept a copy of its tables alive, about 1.5 MB for a 2,000-item table. The issue's 8 workers on a
2,000-element array and 500 single jobs grew the server past 17 GB. The lists of the DynamoDB models are
emptied after each request.
"""

from __future__ import annotations

import threading

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


class OneAtATime:
    """WSGI middleware: one request inside moto at a time."""

    def __init__(self, app):
        from moto.core.model_instances import model_data

        self.app = app
        self.lock = threading.Lock()
        self.tracked = model_data["dynamodb"]  # name -> model class, each with its instances_tracked list

    def __call__(self, environ, start_response):
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                for model in list(self.tracked.values()):  # (see the module docstring)
                    model.instances_tracked.clear()


def start_moto():
    """Start moto's server on a free loopback port; returns (server, endpoint URL). Call server.stop()."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # no access log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi = getattr(server, "_server", None)
    if wsgi is not None and hasattr(wsgi, "app"):
        wsgi.app = OneAtATime(wsgi.app)
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _batch_service_linked_role(url)
    return server, url


def _batch_service_linked_role(url: str) -> None:
    """The account's AWS Batch service-linked role, as AWS names it (AWSServiceRoleForBatch under
    /aws-service-role/batch.amazonaws.com/): the compute environment templates name it. moto 5.2's
    CreateServiceLinkedRole names it AWSServiceRoleForbatch, so the role a real account has is made here."""
    import boto3

    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"])
    iam.create_role(RoleName="AWSServiceRoleForBatch", Path="/aws-service-role/batch.amazonaws.com/",
                    AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                                             '"Principal": {"Service": "batch.amazonaws.com"}, '
                                             '"Action": "sts:AssumeRole"}]}')
