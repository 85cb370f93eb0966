"""Ids, submission, reads and counts of the aws host's job store."""

from __future__ import annotations

import itertools
import json
import random
import zlib
from typing import TYPE_CHECKING, Iterable, Iterator

import botocore.exceptions as bx

from hyper.aws import session as aws
from hyper.aws.attributes import _item
from hyper.aws.dynamo import BATCH_SIZE, GET_BATCH, _Expr, _update, batch_write
from hyper.dependencies import blockers, initial_state
from hyper.errors import HyperError
from hyper.models import Job, JobSpec
from hyper.parsing.arrays import ArraySpec, parse_array
from hyper.parsing.jobids import JobRef
from hyper.states import JobState
from hyper.store.base import JobFilter, QueueCount, Submission
from hyper.store.dynamodb.core import _Core

if TYPE_CHECKING:
    from hyper.aws.session import AwsClient
from hyper.store.dynamodb.keys import (ACTIVE_STATES, DELETED, HELD, ID_BLOCK, INLINE_SPEC_MAX, MAX_SPEC_BYTES,
                                       PARENT, QR, QUEUED, QUEUES_KEY, RUNNING, SPEC, SPEC_TTL, _finished, _k, _ord,
                                       _public)


class _Jobs(_Core):
    # ids ------------------------------------------------------------------------------------------
    def _id_at(self, shard: int, position: int) -> int:
        """The id at `position` (0-based) of a shard: shard k owns blocks k, k+S, k+2S... of ID_BLOCK ids."""
        return ((position // ID_BLOCK) * self.id_shards + shard) * ID_BLOCK + position % ID_BLOCK + 1

    def _allocate_ids(self, n: int, shard: int | None = None) -> list[int]:
        """n unique ids with one atomic ADD: from shard 0 (1, 2, 3...) unless it is throttled."""
        def add(db: AwsClient, k: int) -> int:
            response = db.update_item(TableName=self.meta, Key={"pk": {"S": "ids"}, "sk": {"S": str(k)}},
                                      UpdateExpression="ADD #n :n", ExpressionAttributeNames={"#n": "next"},
                                      ExpressionAttributeValues={":n": {"N": str(n)}}, ReturnValues="UPDATED_NEW")
            return int(response["Attributes"]["next"]["N"])

        if shard is None:
            shard = 0
            try:
                end = add(self.fast, 0)
            except bx.ClientError as exc:
                if aws.error_code(exc) not in aws.THROTTLING_CODES or self.id_shards == 1:
                    raise
                shard = random.randrange(1, self.id_shards)
                end = add(self.db, shard)
        else:
            end = add(self.db, shard)
        return [self._id_at(shard, p) for p in range(end - n, end)]

    # submit ---------------------------------------------------------------------------------------
    @_public
    def submit(self, submissions: list[Submission], now: float) -> list[Job]:
        """Write jobs (arrays as one record); a bad dependency writes nothing at all."""
        self._forget_candidates()
        subs = list(submissions)
        if not subs:
            return []
        prepared = [(sub, parse_array(sub.job.array) if sub.job.array else None, *self._encode_spec(sub.job))
                    for sub in subs]
        checks = self._read_dependencies(subs)

        ids = self._allocate_ids(len(subs))
        out: list[Job] = []
        job_items: list[tuple[str, dict]] = []
        extra_items: list[tuple[str, dict]] = []
        weights: list[tuple[int, tuple[str, str, str], int]] = []
        delta: dict[tuple[str, str, str], int] = {}
        for (sub, array, inline, blob), (pending, never), job_id in zip(prepared, checks, ids):
            job = sub.job
            job.id, job.submitted = job_id, now
            job.state, job.reason = initial_state(sub.hold, pending, never)
            job.array_total = array.count if array else 0
            it = self._job_item(sub, array, inline, blob is not None, now)
            weight = array.count if array is not None else 1
            key = (job.queue, job.definition, job.state.value)
            delta[key] = delta.get(key, 0) + weight
            weights.append((job_id, key, weight))
            job_items.append((self.jobs, {"PutRequest": {"Item": _item(it)}}))
            if blob is not None:
                extra_items.append((self.jobs, {"PutRequest": {"Item": _item(
                    {"id": job_id, "idx": SPEC, "specz": blob, "expires": int(now + SPEC_TTL)})}}))
            for kind, tid, tidx in sub.depends:
                edge = {"pk": f"dep#{tid}", "sk": f"{PARENT if tidx is None else tidx}#{job_id}", "job": job_id,
                        "kind": kind, "expires": int(now + SPEC_TTL)}
                extra_items.append((self.meta, {"PutRequest": {"Item": _item(edge)}}))
            out.append(job)

        extra_items.extend(self._notice_items(out, now))  # `--notify`: hyper/store/notices.py
        self._write_submission(job_items, extra_items, delta, weights, ids)

        # close the race with targets that ended while we wrote: edges are in place, re-read the targets
        for job, (pending, never), sub in zip(out, checks, subs):
            if pending and not never and not sub.hold:
                state = self._reevaluate(job.id, now)
                if state is not None and state is not JobState.HELD:
                    job.state, job.reason = state, ""
        return out

    @staticmethod
    def _encode_spec(job: Job) -> tuple[str | None, bytes | None]:
        """The spec as stored on the job item, and its compressed copy when it is too big for that.

        Why: a DynamoDB item holds 400 KB and reads cost by size, so a spec over INLINE_SPEC_MAX keeps only its
        light part inline (no script, no environment) and the whole spec goes compressed to an item of its own;
        a spec too big even compressed is refused before anything is written."""
        if job.spec is None:
            return None, None
        inline = json.dumps(job.spec.to_dict())
        if len(inline.encode()) <= INLINE_SPEC_MAX:
            return inline, None
        blob = zlib.compress(inline.encode(), 6)
        if len(blob) > MAX_SPEC_BYTES:
            raise HyperError(
                f"job {job.name!r}: its script and environment take {len(blob) // 1024} KB even "
                f"compressed, more than a DynamoDB item holds",
                "let the job read its large inputs from a file or the image (scripts in S3 are the "
                "next step)")
        light = job.spec.to_dict()
        light["script"], light["env"] = None, {}
        return json.dumps(light), blob

    def _read_dependencies(self, subs: list[Submission]) -> list[tuple[str, str]]:
        """(pending, never) per submission, from one batched read of every target. Why before any id is taken:
        every target must exist now, and a bad dependency must leave nothing written, not even the id counter."""
        wanted: set[tuple[int, int]] = set()
        for sub in subs:
            for _, tid, tidx in sub.depends:
                wanted.add((tid, PARENT))
                if tidx is not None:
                    wanted.add((tid, tidx))
        found = self._batch_get(wanted) if wanted else {}
        return [self._check_dependencies(sub.depends, found) for sub in subs]

    def _job_item(self, sub: Submission, array: ArraySpec | None, inline: str | None, big: bool,
                  now: float) -> dict:
        """The job's record (the parent of an array: its elements are written as they are claimed), with the
        state attributes its indexes need. Why separate: submit's loop then reads as what is written where."""
        job = sub.job
        it = {
            "id": job.id, "idx": PARENT, "ord": _ord(job.id, PARENT), "name": job.name, "user": job.user,
            "queue": job.queue, "definition": job.definition, "reason": job.reason,
            "priority": job.priority, "submitted": now, "attempts": 0, "retries": job.retries,
            "uhold": bool(sub.hold), "spec": inline, "big": True if big else None,
            "depends": list(job.depends) or None,
            "deps": [[kind, tid, PARENT if tidx is None else tidx] for kind, tid, tidx in sub.depends] or None,
        }
        if array is not None:
            it.update(array=job.array, a_total=array.count, a_limit=array.limit, a_cursor=0, a_skip=0,
                      a_running=0, a_done=0, a_failed=0, a_deleted=0)
        ready = job.state is JobState.QUEUED and (array is None or array.count > 0)
        it.update(self._state_attrs(it, job.state.value, ready=ready, now=now))
        return it

    def _write_submission(self, job_items: list[tuple[str, dict]], extra_items: list[tuple[str, dict]],
                          delta: dict[tuple[str, str, str], int],
                          weights: list[tuple[int, tuple[str, str, str], int]], ids: list[int]) -> None:
        """Counts, then specs/edges/notices, then the jobs; on throttling, take back the counts of the jobs that
        were not written and raise. Why this order: a crash can over-count (a worker too many), never strand a
        job, and a job item is never visible without its spec, edges and notice."""
        total = len(ids)
        self._note_queues({q for q, _, _ in delta})
        self._apply_counts(delta)
        threads = 8 if len(job_items) + len(extra_items) > 4 * BATCH_SIZE else 1
        send = self._send_batch
        left = batch_write(send, extra_items, threads=threads, attempts=self.batch_attempts)
        if left:  # no job item is written yet: nothing is visible
            self._apply_counts({k: -n for k, n in delta.items()})
            raise self._throttled(total, 0, ids)
        left = batch_write(send, job_items, threads=threads, attempts=self.batch_attempts)
        if left:
            unwritten = {int(r["PutRequest"]["Item"]["id"]["N"]) for _, r in left}
            back: dict[tuple[str, str, str], int] = {}
            for job_id, key, weight in weights:
                if job_id in unwritten:
                    back[key] = back.get(key, 0) - weight
            self._apply_counts(back)
            raise self._throttled(total, total - len(unwritten), sorted(unwritten))

    def _throttled(self, total: int, written: int, unwritten: list[int]) -> HyperError:
        shown = ", ".join(str(i) for i in unwritten[:5]) + (" ..." if len(unwritten) > 5 else "")
        return HyperError(f"DynamoDB throttled the submission in {aws.where_text(self.host)}: {written} of {total} "
                          f"jobs were written; {len(unwritten)} were not (ids {shown})",
                          "the jobs not written do not exist; submit them again in a moment")

    def _check_dependencies(self, depends: Iterable[tuple[str, int, int | None]],
                            found: dict[tuple[int, int], dict]) -> tuple[str, str]:
        resolved = []
        for kind, tid, tidx in depends:
            state = None
            it = found.get((tid, PARENT if tidx is None else tidx))
            if it is not None:
                state = it["state"]
            elif tidx is not None:
                parent = found.get((tid, PARENT))
                if parent and parent.get("array") and tidx in self._array(tid, parent["array"]):
                    state = QUEUED if not _finished(parent["state"]) else parent["state"]
            if state is None:
                target = f"{tid}" if tidx is None else f"{tid}[{tidx}]"
                raise HyperError(f"dependency {kind}:{target} names no job",
                                 "check the id with `qstat -x`; depend only on jobs that exist")
            resolved.append((kind, tid, -1 if tidx is None else tidx, JobState(state)))
        return blockers(resolved)

    # reads ----------------------------------------------------------------------------------------
    @_public
    def get_jobs(self, refs: Iterable[JobRef]) -> tuple[list[Job], list[str]]:
        """Jobs for the given ids, in order; ids that name no job come back in the second list."""
        refs = list(refs)
        parents = self._batch_get((r.id, PARENT) for r in refs)
        element_keys: list[tuple[int, int]] = []
        for ref in refs:
            p = parents.get((ref.id, PARENT))
            if p is not None and ref.indices is not None and p.get("array"):
                spec = self._array(ref.id, p["array"])
                element_keys.extend((ref.id, i) for i in ref.indices if i in spec)
        elements = self._batch_get(element_keys) if element_keys else {}
        specs: dict[int, JobSpec | None] = {}

        def spec_for(p: dict) -> JobSpec | None:
            if p["id"] not in specs:
                specs[p["id"]] = self._spec_of(p)
            cached = specs[p["id"]]
            return JobSpec.from_dict(cached.to_dict()) if cached else None

        found, missing = [], []
        for ref in refs:
            p = parents.get((ref.id, PARENT))
            if p is None:
                missing.append(ref.text)
                continue
            if ref.indices is None:
                found.append(self._job(p, spec_for(p)))
                continue
            if not p.get("array"):
                missing.append(ref.text)
                continue
            spec = self._array(ref.id, p["array"])
            for index in ref.indices:
                if index not in spec:
                    missing.append(f"{ref.id}[{index}]")
                    continue
                el = elements.get((ref.id, index))
                if el is not None:
                    found.append(self._job(el, spec_for(p)))
                    continue
                state = p["state"] if p["state"] in (HELD, DELETED) else QUEUED
                if _finished(p["state"]):
                    state = DELETED
                parent = self._job(p)
                found.append(Job(id=parent.id, index=index, name=parent.name, user=parent.user,
                                 queue=parent.queue, definition=parent.definition, state=JobState(state),
                                 priority=parent.priority, submitted=parent.submitted, retries=parent.retries,
                                 spec=spec_for(p), array=parent.array))
        return found, missing

    def _known_queues(self) -> list[str]:
        """Queues that may hold jobs. Schema 2: the registry every submission notes its queue in (one item, half
        a read unit), made complete at a host's first qstat from every queue resource and every queue the
        counters have seen (32 counter shards, 16 read units). Tables made before schema 2 read those every
        time: their users' IAM policies may not write the registry."""
        if self.schema >= 2:
            found = self.db.get_item(TableName=self.meta, Key=QUEUES_KEY).get("Item")  # eventually consistent,
            if found and "complete" in found:  # as the listing indexes it feeds are
                return sorted(found.get("names", {}).get("SS", []))
        names = {r.name for r in self.list_resources("queue")}
        names.update(q for q, _, _ in self._count_rows(consistent=False))
        if self.schema >= 2:
            e = _Expr()
            self.db.update_item(**_update(self.meta, QUEUES_KEY, e, set_={"complete": True},
                                          add={"names": set(names)} if names else None))
        return sorted(names)

    def _note_queues(self, queues: set[str]) -> None:
        """Before a submission writes anything: its queues are in the registry qstat reads (``_known_queues``).
        One eventually consistent read per queue new to this process, and a write only for a queue never seen
        (a stale read just adds a name twice: ADD to a set)."""
        new = queues - self._queues_noted
        if not new or self.schema < 2:
            return
        found = self.db.get_item(TableName=self.meta, Key=QUEUES_KEY, ProjectionExpression="#n",
                                 ExpressionAttributeNames={"#n": "names"}).get("Item") or {}
        new -= set(found.get("names", {}).get("SS", []))
        if new:
            e = _Expr()
            self.db.update_item(**_update(self.meta, QUEUES_KEY, e, add={"names": new}))
        self._queues_noted |= queues

    def list_jobs(self, flt: JobFilter) -> Iterator[Job]:
        """Jobs and arrays by id (elements after their array with ``elements``), from the sharded indexes."""
        with aws.aws_errors(self.host, "dynamodb", "list jobs"):
            states = [s.value for s in JobState] if flt.include_finished else list(ACTIVE_STATES)
            groups = sorted({self._listing_group(st) for st in states})
            shards = range(self.index_shards)
            queues = [flt.queue] if flt.queue else self._known_queues()
            who = ("user", flt.user) if flt.user else None  # qstat -u: a filter, no index of its own
            queries = [dict(index="by_queue", key="qs", value=_k(q, g, str(sh)), filter_=who)
                       for q in queues for g in groups for sh in shards]
            merged = self._merged(queries, sort_key=lambda it: it["ord"]) if queries else iter(())
            count = 0
            while True:
                want = GET_BATCH if not flt.limit else min(GET_BATCH, flt.limit - count)
                chunk = list(itertools.islice(merged, want))
                if not chunk:
                    return
                specs = self._listing_specs(chunk) if flt.with_spec else {}
                for it in chunk:
                    job = self._job(it, specs.get(it["id"]))
                    yield job
                    count += 1
                    if flt.elements and job.is_array:
                        for el in self._elements(job.id, active_only=not flt.include_finished):
                            yield self._job(el)
                    if flt.limit and count >= flt.limit:
                        return

    def _listing_specs(self, chunk: list[dict]) -> dict[int, JobSpec]:
        """Specs of listed jobs, read from the base table: the listing indexes do not carry them (their
        script would double every index write). Tables made before that still project ``spec``: used as is."""
        wanted = [(it["id"], PARENT) for it in chunk if "spec" not in it]
        full = self._batch_get(wanted) if wanted else {}
        return {job_id: JobSpec.from_dict(json.loads(it["spec"]))
                for (job_id, _), it in full.items() if it.get("spec")}

    def _elements(self, job_id: int, active_only: bool) -> Iterator[dict]:
        """An array's started (or deleted-before-start) elements, by index: one partition, read strongly."""
        return self._query_all(key="id", value=job_id, sort="idx", op=">=", sort_value=0, consistent=True,
                               states=ACTIVE_STATES if active_only else None)

    def _count_rows(self, consistent: bool = True) -> dict[tuple[str, str, str], int]:
        """Tasks per (queue, definition, state): the counter shards summed. Schema 2 counts queued and running
        tasks together (``QR``) and takes RUNNING from the leases index (running jobs only, eventually
        consistent: a claim shows there within about a second); QUEUED is the rest."""
        def shard(k: int) -> list[dict]:
            return list(self._query_all(table=self.meta, key="pk", value=f"cnt#{k}", consistent=consistent))

        totals: dict[tuple[str, str, str], int] = {}
        names = [state.value for state in JobState] + [QR]
        for items in self._parallel(shard, list(range(self.count_shards))):
            for it in items:
                for name in names:
                    n = it.get(name)
                    if n:
                        key = (it["q"], it["d"], name)
                        totals[key] = totals.get(key, 0) + int(n)
        if self.schema >= 2:
            running = self._running_tasks()
            for q, d in {(q, d) for q, d, name in totals if name == QR} | set(running):
                r = running.get((q, d), 0)
                totals[(q, d, RUNNING)] = r
                totals[(q, d, QUEUED)] = max(0, totals.pop((q, d, QR), 0) - r)
        return totals

    def _running_tasks(self) -> dict[tuple[str, str], int]:
        """Running jobs and elements per (queue, definition), from the leases index (it holds exactly those)."""
        out: dict[tuple[str, str], int] = {}
        for it in self._lease_entries():
            key = (it.get("queue", ""), it.get("definition", ""))
            out[key] = out.get(key, 0) + 1
        return out

    @_public
    def counts(self) -> list[QueueCount]:
        return [QueueCount(q, d, JobState(s), n) for (q, d, s), n in sorted(self._count_rows().items()) if n != 0]

    @_public
    def backlog(self) -> dict[tuple[str, str], int]:
        return {(q, d): n for (q, d, s), n in sorted(self._count_rows().items()) if s == QUEUED and n > 0}

    @_public
    def running_tasks(self) -> dict[tuple[str, str], int]:
        return {(q, d): n for (q, d, s), n in sorted(self._count_rows().items()) if s == RUNNING and n > 0}
