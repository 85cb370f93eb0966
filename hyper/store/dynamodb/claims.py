"""Claims, array settling, and the running job's pid, heartbeat and peek on the aws host's job store."""

from __future__ import annotations

import itertools
import random
import time
import uuid
from typing import Any, Iterator

from hyper.array_state import claimable, ended_array, unended_state
from hyper.aws.attributes import _item, _unitem
from hyper.aws.dynamo import TX_ATTEMPTS, _committed, _Expr, _mine, _ours, _Raw, _update
from hyper.models import Job
from hyper.states import JobState, WorkerActivity
from hyper.store.dynamodb.core import _Core
from hyper.store.dynamodb.keys import (CANDIDATE_TTL, LOG_PREFIX, MAX_AHEAD, MAX_CANDIDATES, PAGE, PARENT,
                                       QUEUED, RUNNING, _finished, _idx, _jkey, _k, _ord, _public, _weight)


def _claimed_by(worker: str, lease_until: float, now: float, token: str) -> dict[str, Any]:
    """What a claim of a single job or a requeued element sets besides its attempt count and index keys."""
    return {"worker": worker, "lease": lease_until, "started": now, "ended": None, "pid": None, "exit_code": None,
            "ct": token}


class _Claims(_Core):
    # claim / run / finish -------------------------------------------------------------------------
    def _ready_candidates(self, queue: str, definition: str) -> Iterator[dict]:
        queries = [dict(index="ready", key="rq", value=_k(queue, definition, str(sh)), limit=PAGE)
                   for sh in range(self.index_shards)]
        return self._merged(queries, sort_key=lambda it: it["rk"])

    def _cached_candidates(self, queue: str, definition: str) -> tuple[list[dict], bool]:
        """The ready candidates of (queue, definition), and whether they are reused: one read of every ready
        shard serves this store's claims for CANDIDATE_TTL seconds (16 queries per claim otherwise)."""
        key = (queue, definition)
        read_at, cands = self._candidates.get(key, (0.0, []))
        if cands and time.monotonic() - read_at < CANDIDATE_TTL:
            return cands, True
        cands = list(itertools.islice(self._ready_candidates(queue, definition), MAX_CANDIDATES))
        self._candidates[key] = (time.monotonic(), cands)
        return cands, False

    @_public
    def claim(self, queue: str, definition: str, worker: str, lease_until: float, now: float) -> Job | None:
        """Take the next ready job of (queue, definition) for this worker, or None.

        Candidates come from the sharded ready index in (priority, id, index) order; each is taken with a
        conditional write, so a candidate another worker took first (or a stale index entry) just fails
        its condition and the next one is tried.
        """
        cands, fresh = self._cached_candidates(queue, definition)
        while cands:
            cand = cands[0]
            if cand["idx"] == PARENT and cand.get("array"):
                started = self._claim_element(cand["id"], queue, definition, worker, lease_until, now)
                if started:
                    return started[0]  # the array stays first: it may have more elements to start
                job = None
            else:
                job = self._claim_item(cand["id"], cand["idx"], queue, definition, worker, lease_until, now)
            cands.pop(0)
            if job is not None:
                return job
        if fresh:  # the reused candidates were all taken: look again before saying there is nothing
            self._candidates.pop((queue, definition), None)
            return self.claim(queue, definition, worker, lease_until, now)
        return None

    @_public
    def claim_many(self, queue: str, definition: str, worker: str, lease_until: float, now: float,
                   limit: int) -> list[Job]:
        """Up to ``limit`` jobs for one worker that runs them one after another: several elements of the first
        ready array in ONE transaction (its cursor moves by that many), else one job as ``claim``.

        Why: every element claim writes the array's record, so workers sharing one large array queue behind
        each other's transactions on that one item; claiming k at a time divides those writes by k. Each job
        but the first is marked claimed-ahead (``pre``) until it starts (``set_pid``): the worker gives back the
        ones it will not run (``release``), and the sweep requeues them without spending an attempt if the
        worker dies holding them."""
        if limit <= 1:
            job = self.claim(queue, definition, worker, lease_until, now)
            return [job] if job is not None else []
        cands, _ = self._cached_candidates(queue, definition)
        for cand in list(cands[:4]):
            if cand["idx"] == PARENT and cand.get("array"):
                jobs = self._claim_element(cand["id"], queue, definition, worker, lease_until, now, limit)
                if jobs:
                    return jobs
            else:
                break  # a single job (or a requeued element) comes first: the plain claim takes it
        job = self.claim(queue, definition, worker, lease_until, now)
        return [job] if job is not None else []

    @_public
    def claim_job(self, job_id: int, worker: str, lease_until: float, now: float) -> Job | None:
        """Claim one named job (or the next element of a named array): the SQS-driven worker's path,
        where the message says which job to take and no index is read at all."""
        p = self._get(job_id, PARENT)
        if p is None:
            return None
        if p.get("array"):
            started = self._claim_element(job_id, p["queue"], p["definition"], worker, lease_until, now)
            return started[0] if started else None
        return self._claim_item(job_id, PARENT, p["queue"], p["definition"], worker, lease_until, now)

    def _claim_item(self, job_id: int, idx: int, queue: str, definition: str, worker: str, lease_until: float,
                    now: float) -> Job | None:
        """A single job, or an array element that was requeued (its array's %limit is checked)."""
        if idx == PARENT and self.schema >= 2:
            return self._claim_single(job_id, queue, definition, worker, lease_until, now)
        it = self._get(job_id, idx)
        if (it is None or it["state"] != QUEUED or "rq" not in it or it["queue"] != queue
                or it["definition"] != definition):
            return None
        ops = []
        parent: dict | None = it
        if idx >= 0:
            parent = self._get(job_id, PARENT)
            if parent is None or parent["state"] not in (QUEUED, RUNNING):
                return None
            if parent.get("a_limit") is not None and parent.get("a_running", 0) >= parent["a_limit"]:
                return None
            e = _Expr()
            cond = (f"{e.n('state')} IN ({e.v(QUEUED)}, {e.v(RUNNING)}) AND (attribute_not_exists({e.n('a_limit')}) "
                    f"OR {e.n('a_running')} < {e.n('a_limit')})")
            ops.append(("Update", _update(self.jobs, _jkey(job_id, PARENT), e, add={"a_running": 1}, cond=cond)))
        e = _Expr()
        attempts = it.get("attempts", 0)
        token = uuid.uuid4().hex
        sets = {"attempts": attempts + 1, **_claimed_by(worker, lease_until, now, token)}
        sets.update(self._state_attrs(it, RUNNING, ready=False, now=now, worker=worker))
        cond = e.eq(state=QUEUED, attempts=attempts) + f" AND attribute_exists({e.n('rq')})"
        ops.insert(0, ("Update", _mine(_update(self.jobs, _jkey(job_id, idx), e, set_=sets, cond=cond))))
        result = self._transact(ops, {(queue, definition, QUEUED): -1, (queue, definition, RUNNING): 1},
                                token=token)
        if not result and not _committed(result, 0, token):
            return None
        if idx >= 0:
            self._settle_array(job_id, now)
        it.update({k: v for k, v in sets.items()})
        return self._job(it, self._spec_of(parent))

    def _claim_single(self, job_id: int, queue: str, definition: str, worker: str, lease_until: float,
                      now: float) -> Job | None:
        """A single job (schema 2, where a claim moves no count): one conditional UpdateItem that reads nothing
        first and returns the claimed item (ALL_NEW costs no read units), 4 write units in all with its index
        entries. The condition is the claim: QUEUED, claimable (``rq``) and still in this queue."""
        e = _Expr()
        token = uuid.uuid4().hex
        sets: dict[str, Any] = {"attempts": _Raw(f"if_not_exists({e.n('attempts')}, {e.v(0)}) + {e.v(1)}"),
                                **_claimed_by(worker, lease_until, now, token)}
        sets.update(self._state_attrs({"id": job_id, "idx": PARENT, "queue": queue, "definition": definition},
                                      RUNNING, ready=False, now=now, worker=worker))
        cond = (e.eq(state=QUEUED, queue=queue, definition=definition)
                + f" AND attribute_exists({e.n('rq')}) AND attribute_not_exists({e.n('array')})")
        op = _mine(_update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=cond))
        try:
            it = _unitem(self.db.update_item(**op, ReturnValues="ALL_NEW")["Attributes"])
        except self.db.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item")
            it = _unitem(old) if old else {}
            if not _ours(it, token):  # taken by another worker, or no longer claimable
                return None
            # our own claim, committed by a first attempt whose response was lost
        return self._job(it, self._spec_of(it))

    def _claim_element(self, job_id: int, queue: str, definition: str, worker: str, lease_until: float,
                       now: float, take: int = 1) -> list[Job]:
        """Start an array's next element(s), up to ``take``: advance the cursor (if it still is where we read
        it) and put the element items, in one transaction. Elements deleted before they started are stepped
        over. All but the first are claimed ahead (``pre``, see ``claim_many``)."""
        for attempt in range(TX_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * attempt))
            p = self._get(job_id, PARENT)
            if p is None or p["state"] != QUEUED or p["queue"] != queue or p["definition"] != definition:
                return []
            cursor, skip = p["a_cursor"], p["a_skip"]
            limit = p.get("a_limit")
            room = _weight(p) if limit is None else min(_weight(p), limit - p.get("a_running", 0))
            if room <= 0:
                self._settle_array(job_id, now)  # a stale ready entry: take the array out of the index
                return []
            spec = self._array(job_id, p["array"])
            position, left = cursor, skip
            indices: list[int] = []
            while len(indices) < min(take, room, MAX_AHEAD) and position < spec.count:
                index = spec.index_at(position)
                position += 1
                if left and self._get(job_id, index) is not None:
                    left -= 1  # deleted before it started: step over it
                    continue
                indices.append(index)
            if not indices:
                self._settle_array(job_id, now)
                return []
            token = uuid.uuid4().hex
            elements = []
            for n, index in enumerate(indices):
                element = {"id": job_id, "idx": index, "ord": _ord(job_id, index), "name": p["name"],
                           "user": p["user"], "queue": queue, "definition": definition, "reason": "",
                           "priority": p.get("priority", 0), "submitted": p.get("submitted"), "started": now,
                           "attempts": 1, "retries": p.get("retries", 0), "worker": worker, "lease": lease_until,
                           "ct": token}
                if n:
                    element["pre"] = 1
                element.update(self._state_attrs(element, RUNNING, ready=False, now=now, worker=worker))
                elements.append(element)
            e = _Expr()
            k = len(indices)
            cond = e.eq(state=QUEUED, a_cursor=cursor, a_skip=skip)
            if limit is not None:  # (no arithmetic in conditions: the running count must be the one we read)
                running = p.get("a_running", 0)
                cond += (f" AND ({e.n('a_running')} = {e.v(running)}"
                         + (f" OR attribute_not_exists({e.n('a_running')}))" if not running else ")"))
            parent_op = _update(self.jobs, _jkey(job_id, PARENT), e,
                                set_={"a_cursor": position, "a_skip": left,
                                      "started": _Raw(f"if_not_exists({e.n('started')}, {e.v(now)})")},
                                add={"a_running": k}, cond=cond)
            puts = [("Put", _mine({"TableName": self.jobs, "Item": _item(el),
                                   "ConditionExpression": "attribute_not_exists(id)"})) for el in elements]
            result = self._transact([("Update", parent_op), *puts],
                                    {(queue, definition, QUEUED): -k, (queue, definition, RUNNING): k}, token=token)
            if result or _committed(result, 1, token):
                self._settle_array(job_id, now)
                spec_of = self._spec_of(p)
                return [self._job(el, spec_of) for el in elements]
        return []

    def _settle_array(self, job_id: int, now: float) -> None:
        """Recompute an array's state and readiness from its counters; end it when every element ended.

        Conditional on the counters read, retried when they moved: every writer settles after its own write,
        so the last one always sees the final counters.
        """
        for _ in range(TX_ATTEMPTS * 2):
            p = self._get(job_id, PARENT)
            if p is None or not p.get("array"):
                return
            state, total = p["state"], p["a_total"]
            remaining, running, done = _weight(p), p.get("a_running", 0), p.get("a_done", 0)
            limit = p.get("a_limit")
            q, d = p["queue"], p["definition"]
            e = _Expr()
            cond = e.eq(state=state, a_cursor=p["a_cursor"], a_skip=p["a_skip"], a_running=running, a_done=done)
            ended = ended_array(total, done, p.get("a_failed", 0), p.get("a_deleted", 0))
            if ended is not None:
                if _finished(state):
                    return
                final, reason = ended[0].value, ended[1]
                sets = {"ended": now, "reason": reason, "a_running": 0}
                sets.update(self._state_attrs(p, final, ready=False, now=now))
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=cond)
                if self._transact([("Update", op)], {(q, d, state): -remaining, (q, d, final): remaining}):
                    self._resolve_dependents(job_id, PARENT, now)
                    self._expire_spec(p, now)
                    return
                continue
            new_state = unended_state(JobState(state), remaining).value
            want_ready = claimable(JobState(new_state), remaining, running, limit)
            if new_state == state and want_ready == ("rq" in p):
                return
            sets = self._state_attrs(p, new_state, ready=want_ready, now=now)
            op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=cond)
            delta = {} if new_state == state else {(q, d, state): -remaining, (q, d, new_state): remaining}
            if self._transact([("Update", op)], delta):
                return
        # every failed round means the counters moved: whoever moved them settles after its own write and sees
        # later counters than ours, so giving up here loses nothing. Raising would be worse: the caller's claim
        # or finish has committed, and a worker that died of it would leave its element RUNNING with nobody.

    @_public
    def set_pid(self, job: Job, worker: str, pid: int, log: str | None = None) -> None:
        """The attempt's process, and where its output goes (``log``, kept per attempt as ``lg<attempt>``: the
        same write, so saying where the output is costs nothing extra)."""
        e = _Expr()
        sets: dict[str, Any] = {"pid": pid, "pre": None}  # started: no longer a job claimed ahead
        if log:
            sets[f"{LOG_PREFIX}{job.attempts}"] = log
        try:
            self.db.update_item(**_update(self.jobs, _jkey(job.id, _idx(job)), e, set_=sets,
                                          cond=e.eq(worker=worker)))
        except self.db.exceptions.ConditionalCheckFailedException:
            pass

    @_public
    def heartbeat(self, job: Job, worker: str, lease_until: float, jobs_run: int | None = None) -> JobState | None:
        """Extend the lease; returns RUNNING while this worker owns the job (DELETED and the like for an
        unregistered claimer), or None if it no longer does.

        A registered worker renews its own registry item (1 write unit, in no index, nothing read): its lease
        covers the job it runs, and the sweep reads it before it calls a job lost. The job item, and with it
        the ``leases`` index, is not written at all, so a beat never rewrites an index key (3 write units
        before, and the index's 16 keys throttled the table at ~8,000 running jobs). The sweep fences a job
        only in a transaction that marks it on this item (``fenced``), so a late renewal fails its condition
        here; ``qdel`` is seen by ``peek``, on its own schedule. With ``jobs_run`` the same write is the
        worker's registry touch (BUSY, jobs run, heartbeat: ``RENEWAL_TOUCHES``). A claimer that never
        registered (tools, tests) renews the job's own lease, as before.
        """
        e = _Expr()
        sets: dict[str, Any] = {"lease": lease_until}
        if jobs_run is not None:
            sets.update(heartbeat=time.time(), state=WorkerActivity.BUSY, jobs_run=jobs_run)
        try:
            self.db.update_item(**_update(
                self.meta, self._worker_key(worker), e, set_=sets,
                cond=f"attribute_exists(pk) AND {e.n('state')} <> {e.v('EXITED')} "
                     f"AND NOT contains({e.n('fenced')}, {e.v(f'{job.id}#{_idx(job)}')})"))
            return JobState.RUNNING
        except self.db.exceptions.ConditionalCheckFailedException:
            pass
        e = _Expr()
        try:
            self.db.update_item(**_update(self.jobs, _jkey(job.id, _idx(job)), e, set_={"lease": lease_until},
                                          cond=e.eq(worker=worker, state=RUNNING)))
            return JobState.RUNNING
        except self.db.exceptions.ConditionalCheckFailedException:
            it = self._get(job.id, _idx(job))
            if it is None or it.get("worker") != worker:
                return None
            return JobState(it["state"])

    @_public
    def peek(self, job: Job, worker: str) -> JobState | None:
        """The job's state without renewing anything: one eventually consistent GetItem (half a read unit), the
        worker's qdel check between lease renewals. A fence or qdel shows within about a second."""
        found = self.db.get_item(TableName=self.jobs, Key=_jkey(job.id, _idx(job)),
                                 ProjectionExpression="#s, #w",
                                 ExpressionAttributeNames={"#s": "state", "#w": "worker"}).get("Item")
        if found is None or found.get("worker", {}).get("S") != worker:
            return None
        return JobState(found["state"]["S"])
