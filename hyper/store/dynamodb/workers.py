"""The worker registry and the scheduler's memory of its submissions on the aws host's job store."""

from __future__ import annotations

from hyper.aws.attributes import _item
from hyper.aws.dynamo import _Expr, _update
from hyper.store.base import WorkerInfo
from hyper.store.dynamodb.core import _Core
from hyper.store.dynamodb.keys import _f, _public


class _Workers(_Core):
    @_public
    def register_worker(self, info: WorkerInfo) -> None:
        key = self._worker_key(info.id)
        item = {"pk": key["pk"]["S"], "sk": info.id, "queue": info.queue, "definition": info.definition,
                "host": info.host, "pid": info.pid, "started": info.started, "heartbeat": info.heartbeat,
                "state": info.state, "jobs_run": info.jobs_run,
                "expires": int(info.heartbeat + self.retention) if info.state == "EXITED" else None}
        self.db.put_item(TableName=self.meta, Item=_item(item))

    @_public
    def touch_worker(self, worker: str, now: float, state: str, jobs_run: int) -> None:
        e = _Expr()
        sets = {"heartbeat": now, "state": state, "jobs_run": jobs_run,
                "expires": int(now + self.retention) if state == "EXITED" else None}
        try:
            self.db.update_item(**_update(self.meta, self._worker_key(worker), e, set_=sets,
                                          cond="attribute_exists(pk)"))
        except self.db.exceptions.ConditionalCheckFailedException:
            pass

    def _workers(self) -> list[WorkerInfo]:
        def shard(k: int) -> list[dict]:
            return list(self._query_all(table=self.meta, key="pk", value=f"wrk#{k}", consistent=True))

        out: list[WorkerInfo] = []
        for items in self._parallel(shard, list(range(self.count_shards))):
            out.extend(WorkerInfo(id=it["sk"], queue=it.get("queue", ""), definition=it.get("definition", ""),
                                  host=it.get("host", ""), pid=it.get("pid"), started=_f(it.get("started")) or 0.0,
                                  heartbeat=_f(it.get("heartbeat")) or 0.0, state=it.get("state", "IDLE"),
                                  jobs_run=it.get("jobs_run", 0)) for it in items)
        return sorted(out, key=lambda w: (w.started, w.id))

    @_public
    def list_workers(self, live_since: float | None = None) -> list[WorkerInfo]:
        workers = self._workers()
        if live_since is not None:
            workers = [w for w in workers if w.state != "EXITED" and w.heartbeat >= live_since]
        return workers

    @_public
    def remember_submission(self, region: str, batch_job_id: str, at: float, keep: float) -> None:
        """The scheduler's record of a worker array it submitted, kept ``keep`` seconds (TTL), so a scheduler
        restarted before Batch's ListJobs shows the array still counts its workers (no double provisioning).
        One partition: writes follow SubmitJob, at most 50/s per account."""
        item = {"pk": "sched", "sk": f"{region}#{batch_job_id}", "region": region, "job": batch_job_id,
                "at": at, "expires": int(at + keep) + 1}
        self.db.put_item(TableName=self.meta, Item=_item(item))

    @_public
    def recent_submissions(self, since: float) -> list[tuple[str, str, float]]:
        """(region, Batch job id, submitted at) of the worker arrays submitted since ``since``."""
        found = self._query_all(table=self.meta, key="pk", value="sched", consistent=True)
        return sorted((it["region"], it["job"], _f(it["at"]) or 0.0) for it in found
                      if (_f(it.get("at")) or 0.0) >= since)

    @_public
    def prune_workers(self, before: float) -> None:
        for w in self._workers():
            if w.state == "EXITED" and w.heartbeat < before:
                self.db.delete_item(TableName=self.meta, Key=self._worker_key(w.id))
