"""Finish, requeue of lost jobs, and dependency re-evaluation on the aws host's job store."""

from __future__ import annotations

import json
from typing import Any, Iterable

from hyper.aws.dynamo import TX_ATTEMPTS, _Expr, _update
from hyper.dependencies import blockers, effective_state, still_held
from hyper.models import Job
from hyper.retry import LOST, RELEASED, next_state
from hyper.states import JobState
from hyper.store.base import LostHandler
from hyper.store.dynamodb.core import _Core
from hyper.store.dynamodb.keys import (FENCE, HELD, LOG_PREFIX, PARENT, QUEUED, RUNNING, _idx, _jkey,
                                       _public, _weight)


class _Finish(_Core):
    @_public
    def finish(self, job: Job, worker: str, outcome: str, exit_code: int | None, reason: str,
               now: float, log: str | None = None) -> JobState | None:
        """Record a run's end if this worker still owns it; applies the retry policy (``log``: see set_pid)."""
        state = self._finish(job.id, _idx(job), worker, outcome, exit_code, reason, now, log)
        if state == QUEUED or state is JobState.QUEUED:  # a retry is claimable again: read the index anew
            self._forget_candidates()
        return state

    def _finish(self, job_id: int, idx: int, worker: str, outcome: str, exit_code: int | None, reason: str,
                now: float, log: str | None = None) -> JobState | None:
        for _ in range(TX_ATTEMPTS):
            it = self._get(job_id, idx)
            if it is None or it["state"] != RUNNING or it.get("worker") != worker:
                return None  # deleted, or requeued after our lease expired: someone else owns it now
            if outcome == RELEASED and "pre" not in it:
                return None  # it started: only its own end may be recorded now
            parent = self._get(job_id, PARENT) if idx >= 0 else it
            spec_text = (parent or {}).get("spec")
            retry_on_exit = bool(spec_text and json.loads(spec_text).get("retry_on_exit"))
            state, why = next_state(outcome, exit_code, it.get("attempts", 0), it.get("retries", 0), retry_on_exit,
                                    reason)
            e = _Expr()
            sets: dict[str, Any] = {"reason": why, "exit_code": exit_code, "ended": now}
            if log:
                sets[f"{LOG_PREFIX}{it.get('attempts', 0)}"] = log
            if outcome == RELEASED:  # claimed ahead, never started: the attempt is not spent
                sets.update(attempts=max(0, it.get("attempts", 1) - 1), ended=None, started=None, pre=None)
            if state is JobState.QUEUED:
                sets.update(worker=None, lease=None, pid=None)
                sets.update(self._state_attrs(it, QUEUED, ready=True, now=now))
            else:
                sets["lease"] = None
                if worker.startswith(FENCE):
                    sets["worker"] = worker[len(FENCE):]
                sets.update(self._state_attrs(it, state.value, ready=False, now=now))
            cond = e.eq(state=RUNNING, worker=worker, attempts=it.get("attempts", 0))
            if outcome == RELEASED:
                cond += f" AND attribute_exists({e.n('pre')})"  # only a job that never started goes back so
            ops = [("Update", _update(self.jobs, _jkey(job_id, idx), e, set_=sets, cond=cond))]
            if idx >= 0:
                done = int(state is not JobState.QUEUED)
                ops.append(("Update", _update(self.jobs, _jkey(job_id, PARENT), _Expr(),
                                              add={"a_running": -1, "a_done": done,
                                                   "a_failed": int(state is JobState.FAILED)})))
            q, d = it["queue"], it["definition"]
            if self._transact(ops, {(q, d, RUNNING): -1, (q, d, state.value): 1}):
                break
        else:
            raise self._contended(job_id)
        if idx >= 0:
            self._settle_array(job_id, now)
        if state.finished:
            self._resolve_dependents(job_id, idx, now)
            if idx < 0:
                self._expire_spec(it, now)
        return state

    @_public
    def release(self, job: Job, worker: str, now: float) -> JobState | None:
        """Give back a job claimed ahead (``claim_many``) that this worker did not start: QUEUED again, its
        attempt not spent. Refused (None) once it started (``set_pid``) or when it is no longer ours."""
        state = self._finish(job.id, _idx(job), worker, RELEASED, None, "", now)
        if state is JobState.QUEUED:
            self._forget_candidates()
        return state

    @_public
    def requeue_expired(self, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """Return jobs whose lease ran out to the queue (or fail them when their retries are spent)."""
        self._forget_candidates()
        candidates: list[dict] = []
        for shard in range(self.index_shards):
            candidates.extend(self._query_all(index="leases", key="ls", value=str(shard), sort="lease", op="<",
                                              sort_value=now))
        if not candidates:
            return []
        # a registered worker's lease is on its own item: its jobs are lost only once that lease is past too,
        # by lease_margin (the worker stops its own job before its lease ends: no two attempts overlap)
        leases = self._worker_leases()
        keys = sorted({(it["id"], it["idx"]) for it in candidates
                       if "rw" not in it or leases.get(it["rw"], float("-inf")) < now - self.lease_margin})
        return self._lose(keys, "worker lost (lease expired)", now, on_lost, expired_before=now,
                          worker_leases=leases)

    def _worker_leases(self) -> dict[str, float]:
        """Each registered worker's lease (workers that never renewed one: -inf), read from the registry."""
        def shard(k: int) -> list[dict]:
            return list(self._query_all(table=self.meta, key="pk", value=f"wrk#{k}"))

        return {it["sk"]: float(it.get("lease", float("-inf"))) for items in
                self._parallel(shard, list(range(self.count_shards))) for it in items}

    @_public
    def requeue_worker(self, worker: str, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """A worker is known dead (its process exited): requeue its jobs at once, not at lease expiry."""
        self._forget_candidates()
        if self.schema < 2:  # (tables made before schema 2 have a by_worker index, and older ones no rw in leases)
            found = list(self._query_all(index="by_worker", key="rw", value=worker))
        else:
            found = [it for it in self._running_entries(now) if it.get("rw") == worker]
        keys = sorted({(it["id"], it["idx"]) for it in found})
        lost = self._lose(keys, f"worker {worker} died", now, on_lost, worker=worker)
        e = _Expr()
        try:
            self.db.update_item(**_update(self.meta, self._worker_key(worker), e,
                                          set_={"state": "EXITED", "heartbeat": now,
                                                "expires": int(now + self.retention)},
                                          cond="attribute_exists(pk)"))
        except self.db.exceptions.ConditionalCheckFailedException:
            pass
        return lost

    def _running_entries(self, now: float) -> list[dict]:
        """Every entry of the leases index (the running jobs, with their worker ``rw``), read once per ``now``.
        Why: the scheduler requeues the jobs of every worker that ended in one tick, all with that tick's
        ``now``; one read of the index serves them all instead of one read of every running job per worker.
        A job claimed after the read is caught by the lease sweep; ``_lose`` re-reads each job it takes."""
        if self._leases_read is not None and self._leases_read[0] == now:
            return self._leases_read[1]
        entries = self._lease_entries()
        self._leases_read = (now, entries)
        return entries

    def _lose(self, keys: Iterable[tuple[int, int]], reason: str, now: float, on_lost: LostHandler | None, *,
              expired_before: float | None = None, worker: str | None = None,
              worker_leases: dict[str, float] | None = None) -> list[Job]:
        lost = []
        for job_id, idx in keys:
            it = self._get(job_id, idx)
            if it is None or it["state"] != RUNNING or not it.get("worker"):
                continue
            owner = it["worker"]
            plain = owner[len(FENCE):] if owner.startswith(FENCE) else owner
            if worker is not None and plain != worker:
                continue
            if expired_before is not None and not (it.get("lease") is not None and it["lease"] < expired_before):
                continue
            if worker_leases is not None and worker_leases.get(plain, float("-inf")) >= now - self.lease_margin:
                continue  # its worker renews its lease (tables from before rw was in the index land here)
            fence = FENCE + plain
            if owner != fence:
                # fence first: the late worker's heartbeat then fails, and the lease must not have moved
                e = _Expr()
                cond = e.eq(state=RUNNING, worker=owner, lease=it["lease"])
                ops = [("Update", _update(self.jobs, _jkey(job_id, idx), e, set_={"worker": fence}, cond=cond))]
                if worker_leases is not None and plain in worker_leases:
                    # ...and its worker did not renew since the sweep read the registry; the job is marked
                    # fenced on the worker's item, so a late renewal fails there (heartbeat) without a read
                    w = _Expr()
                    ops.append(("Update", _update(
                        self.meta, self._worker_key(plain), w, add={"fenced": {f"{job_id}#{idx}"}},
                        cond=f"attribute_not_exists({w.n('lease')}) OR {w.n('lease')} < "
                             f"{w.v(now - self.lease_margin)}")))
                if not self._transact(ops):
                    continue  # it heartbeated or ended meanwhile: not lost
            job = self._job(it, self._spec_of(it if idx < 0 else self._get(job_id, PARENT)))
            if on_lost is not None:
                on_lost(job)  # e.g. kill an orphaned process group before anyone may start the job again
            # claimed ahead and never started (the worker died holding it): back to the queue, no attempt spent
            outcome = RELEASED if "pre" in it else LOST
            state = self._finish(job_id, idx, fence, outcome, None, reason, now)
            if state is not None:
                job.state = state
                lost.append(job)
        return lost

    # dependencies ---------------------------------------------------------------------------------
    def _resolve_dependents(self, job_id: int, idx: int | None, now: float) -> None:
        """Re-evaluate the jobs that depend on job_id (idx -1), one element (idx >= 0) or all (None)."""
        if idx is None:
            edges = self._query_all(table=self.meta, key="pk", value=f"dep#{job_id}", consistent=True)
        else:
            edges = self._query_all(table=self.meta, key="pk", value=f"dep#{job_id}", sort="sk",
                                    op="begins_with", sort_value=f"{idx}#", consistent=True)
        for dependent in sorted({int(e["job"]) for e in edges}):
            self._reevaluate(dependent, now)

    def _reevaluate(self, job_id: int, now: float) -> JobState | None:
        """A held job's dependencies again: release it, or say why it still waits. Returns its new state."""
        for _ in range(TX_ATTEMPTS):
            p = self._get(job_id, PARENT)
            if p is None or p["state"] != HELD:
                return None
            deps = p.get("deps") or []
            keys = set()
            for _, tid, tidx in deps:
                keys.add((int(tid), PARENT))
                keys.add((int(tid), int(tidx)))
            found = self._batch_get(keys) if keys else {}
            def state_of(tid: int, tidx: int) -> JobState:
                t, parent = found.get((tid, tidx)), found.get((tid, PARENT))
                return effective_state(t["state"] if t is not None else None,
                                       parent["state"] if parent is not None else None)

            pending, never = blockers((kind, int(tid), int(tidx), state_of(int(tid), int(tidx)))
                                      for kind, tid, tidx in deps)
            e = _Expr()
            reason = still_held(pending, never, bool(p.get("uhold")))
            if reason:
                if reason == p.get("reason"):
                    return JobState.HELD
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_={"reason": reason}, cond=e.eq(state=HELD))
                if self._transact([("Update", op)]):
                    return JobState.HELD
                continue
            sets = {"reason": ""}
            sets.update(self._state_attrs(p, QUEUED, ready=not p.get("array"), now=now))
            extra = {"a_cursor": p["a_cursor"], "a_skip": p["a_skip"]} if p.get("array") else {}
            op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=e.eq(state=HELD, uhold=False, **extra))
            w = _weight(p)
            if self._transact([("Update", op)], {(p["queue"], p["definition"], HELD): -w,
                                                 (p["queue"], p["definition"], QUEUED): w}):
                if p.get("array"):
                    self._settle_array(job_id, now)
                return JobState.QUEUED
        raise self._contended(job_id)
