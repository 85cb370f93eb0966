"""Reading a job attempt's output back from CloudWatch Logs (``qlog``); the layout is in hyper/aws/logs.py."""

from __future__ import annotations

from typing import Any, Iterator

from hyper.aws import session as aws
from hyper.aws.logs import GET_LIMIT, LogWindow, _logs, group_name
from hyper.config import Host


# reading ---------------------------------------------------------------------------------------------
class StreamReader:
    """Reads one stream forward, page by page; ``read()`` again returns only what arrived since.

    ``window`` limits the reading to one attempt's events in a worker's shared stream (its time bounds)."""

    def __init__(self, host: Host, name: str, window: LogWindow | None = None):
        self.host = host
        self.group = group_name(host)
        self.name = name
        self.window = window
        self.token: str | None = None

    def bounded(self, window: LogWindow) -> None:
        """The attempt ended (its window got its end): read on from where we are, up to that end only."""
        self.window = window

    def _get(self, **kwargs: Any) -> dict | None:
        client = _logs(self.host)
        with aws.aws_errors(self.host, "logs", f"read {self.group} {self.name}"):
            if self.window is not None:
                kwargs.update(self.window.bounds())
            try:
                resp = client.get_log_events(logGroupName=self.group, logStreamName=self.name, **kwargs)
            except client.exceptions.ResourceNotFoundException:
                return None  # no output yet (streams are created with the first byte)
        if self.window is not None:  # a paging token may outlive the bounds it was made with: check each event
            lo, hi = self.window.start, self.window.end
            resp["events"] = [e for e in resp.get("events", ()) if e["timestamp"] >= lo
                              and (hi is None or e["timestamp"] <= hi)]
        return resp

    def read(self) -> bytes:
        """Everything after what was read before (the whole stream the first time)."""
        return b"".join(self.pages())

    def pages(self) -> Iterator[bytes]:
        while True:
            kwargs: dict = {"startFromHead": True, "limit": GET_LIMIT}
            if self.token:
                kwargs["nextToken"] = self.token
            resp = self._get(**kwargs)
            if resp is None:
                return
            events = resp.get("events", ())
            if events:
                yield "".join(e["message"] for e in events).encode("utf-8")
            token = resp.get("nextForwardToken")
            if not token or token == self.token:
                return
            self.token = token

    def tail(self, n: int) -> bytes:
        """The last ``n`` lines; afterwards ``read()`` continues from the stream's end."""
        limit = min(GET_LIMIT, max(n, 1) + 16)
        resp = self._get(startFromHead=False, limit=limit)
        if resp is None:
            return b""
        self.token = resp.get("nextForwardToken")
        pages = ["".join(e["message"] for e in resp.get("events", ()))]
        back = resp.get("nextBackwardToken")
        while resp.get("events") and "".join(pages).count("\n") <= n and back:
            resp = self._get(startFromHead=False, limit=limit, nextToken=back)
            if resp is None or not resp.get("events"):
                break
            pages.insert(0, "".join(e["message"] for e in resp["events"]))
            if resp.get("nextBackwardToken") == back:
                break
            back = resp.get("nextBackwardToken")
        lines = "".join(pages).encode("utf-8").splitlines(keepends=True)
        return b"".join(lines[-n:]) if n else b""


def stream_exists(host: Host, name: str) -> bool:
    client = _logs(host)
    with aws.aws_errors(host, "logs", "describe log streams"):
        try:
            found = client.describe_log_streams(logGroupName=group_name(host), logStreamNamePrefix=name)
        except client.exceptions.ResourceNotFoundException:
            return False
    return any(s["logStreamName"] == name for s in found.get("logStreams", ()))
