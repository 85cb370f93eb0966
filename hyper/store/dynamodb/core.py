"""The store's shared core: opening the tables, item reads, counter shards, state attributes, specs, and
resources. The concerns (submit/list, delete/hold, claims, finish/dependencies, workers) are mixins on it."""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import botocore.exceptions as bx

from hyper.aws import session as aws
from hyper.aws import tables
from hyper.aws.attributes import _item, _unitem
from hyper.aws.dynamo import GET_BATCH, TX_ATTEMPTS, DynamoTables, _Expr, _update
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import RESOURCE_KINDS, Job, JobSpec, Resource
from hyper.parsing.arrays import ArraySpec, parse_array
from hyper.states import JobState
from hyper.store.dynamodb.keys import (ACTIVE, ACTIVE_STATES, FENCE, LEASE_MARGIN, LOG_PREFIX, MAX_AHEAD,
                                       MAX_LEASE, PARENT, QR, QUEUED, RUNNING, SPEC, SPEC_TTL, _f, _finished, _jkey, _k,
                                       _public, _rank)
from hyper.store.notices import DynamoNotices


class _Core(DynamoNotices, DynamoTables):
    """What every concern's mixin shares: the open tables and their settings, item reads, counter shards,
    state attributes, specs and resources. ``DynamoStore`` (__init__.py) puts the mixins together."""

    SPEC_TTL = SPEC_TTL  # notices (hyper/store/notices.py) expire like specs
    IDLE_POLL_CEILING = 1.0  # longest wait between a worker's empty claims (each reads every ready shard)
    TOUCH_EVERY = 20.0  # a worker's IDLE/BUSY registry write at most this often (1 write unit each)
    RENEWAL_TOUCHES = True  # a lease renewal writes the worker's item: it carries the BUSY touch (claims.heartbeat)
    STATE_POLL = 60.0  # longest wait between a running worker's qdel checks (each an eventually consistent
    #                    GetItem; hyper/worker/fence.py checks every fifth of the job's age, 2 s at first)

    if TYPE_CHECKING:  # defined by the concern mixins, declared here so each mixin can call the others
        def _resolve_dependents(self, job_id: int, idx: int | None, now: float) -> None: ...  # finish.py
        def _reevaluate(self, job_id: int, now: float) -> JobState | None: ...  # finish.py
        def _settle_array(self, job_id: int, now: float) -> None: ...  # claims.py
        def _elements(self, job_id: int, active_only: bool) -> Iterator[dict]: ...  # jobs.py

    def __init__(self, host: Host):
        self.host = host
        names = tables.table_names(host)
        self.jobs, self.meta = names["jobs"], names["meta"]
        self._specs: dict[int, ArraySpec] = {}
        # (queue, definition) -> (read at, candidates in claim order): one read of every ready shard serves
        # many claims, instead of 16 queries per claim
        self._candidates: dict[tuple[str, str], tuple[float, list[dict]]] = {}
        self._spec_cache: dict[int, dict] = {}
        self._queues_noted: set[str] = set()  # queues this process saw in the registry (jobs._note_queues)
        self._leases_read: tuple[float, list[dict]] | None = None  # (now, leases index) for requeue_worker
        self._pool_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.batch_attempts = 8  # rounds of BatchWriteItem before unwritten jobs become an error
        with aws.aws_errors(host, "dynamodb", "open the job tables"):
            self.db = aws.client(host, "dynamodb")
            # the id counter's first try fails fast when throttled, so the submitter spills to another shard
            self.fast = aws.client(host, "dynamodb", max_attempts=2)
            config = self._load_config()
        self.index_shards = int(config["index_shards"])
        self.count_shards = int(config["count_shards"])
        self.id_shards = int(config["id_shards"])
        self.retention = int(config["retention_days"]) * 86400
        # the layout the tables were made with (hyper/aws/tables.py SCHEMA): before 2, by_queue is keyed per
        # active state and the counters count RUNNING apart from QUEUED
        self.schema = int(config["schema"])
        # seconds past a worker's lease before the sweep takes its job (the worker stops it by then itself)
        self.lease_margin = float((host.extra or {}).get("lease_margin", LEASE_MARGIN))
        self.STATE_POLL = float((host.extra or {}).get("state_poll", self.STATE_POLL))
        # renewals are writes here: a long job's lease grows with its age up to this (hyper/worker/fence.py);
        # the scheduler requeues the jobs of workers their backend saw end without waiting for it
        self.MAX_LEASE = float((host.extra or {}).get("max_lease", MAX_LEASE))
        # array elements a worker may claim in one transaction while its jobs are short (hyper/worker/loop.py)
        self.CLAIM_AHEAD = max(1, min(MAX_AHEAD, int((host.extra or {}).get("claim_ahead", MAX_AHEAD))))

    def _send_batch(self, body: dict) -> dict:
        """One BatchWriteItem call (a seam: tests put a throttling DynamoDB in front of it)."""
        return self.db.batch_write_item(RequestItems=body)

    def _load_config(self) -> dict:
        key = {"pk": {"S": "config"}, "sk": {"S": "config"}}
        try:
            found = self.db.get_item(TableName=self.meta, Key=key, ConsistentRead=True).get("Item")
        except bx.ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise HyperError(f"the job tables of host {self.host.name!r} do not exist ({self.meta}, "
                                 f"{aws.where_text(self.host)})",
                                 f"if they were deleted, forget the host with `hyper hosts delete-host "
                                 f"{self.host.name}` and create it again; else check its table prefix and "
                                 "region in hosts.yaml") from None
            raise
        if found is None:  # tables created without waiting: the first store to open writes the settings
            try:
                self.db.put_item(TableName=self.meta, Item=tables.config_item(self.host),
                                 ConditionExpression="attribute_not_exists(pk)")
            except self.db.exceptions.ConditionalCheckFailedException:
                pass
            found = self.db.get_item(TableName=self.meta, Key=key, ConsistentRead=True)["Item"]
        config = dict(tables.DEFAULT_SETTINGS)
        config.update({k: v for k, v in _unitem(found).items() if k in config})
        config["schema"] = int(found.get("schema", {}).get("N", 1))
        return config


    # low-level reads and writes -------------------------------------------------------------------
    def _shard(self, job_id: int, idx: int) -> int:
        return (job_id + max(idx, 0)) % self.index_shards

    def _get(self, job_id: int, idx: int) -> dict | None:
        found = self.db.get_item(TableName=self.jobs, Key=_jkey(job_id, idx), ConsistentRead=True).get("Item")
        return _unitem(found) if found else None

    def _get_known(self, job_id: int, idx: int) -> dict:
        """Re-read an item this call has already seen. Why: only its record's expiry (TTL) or a purge between
        the two reads can make it vanish; say so in one line instead of failing on None further on."""
        found = self._get(job_id, idx)
        if found is None:
            shown = str(job_id) if idx == PARENT else f"{job_id}[{idx}]"
            raise HyperError(f"job {shown} disappeared from {self.jobs} while it was being changed",
                             "check it with `qstat -x`; run the command again if it still exists")
        return found

    def _batch_get(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], dict]:
        keys = list(dict.fromkeys(keys))
        out: dict[tuple[int, int], dict] = {}
        for start in range(0, len(keys), GET_BATCH):
            pending = {self.jobs: {"Keys": [_jkey(*k) for k in keys[start:start + GET_BATCH]],
                                   "ConsistentRead": True}}
            for attempt in range(10):
                if attempt:
                    time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
                response = self.db.batch_get_item(RequestItems=pending)
                for raw in response.get("Responses", {}).get(self.jobs, []):
                    it = _unitem(raw)
                    out[(it["id"], it["idx"])] = it
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise HyperError(f"DynamoDB kept throttling reads of {self.jobs} ({aws.where_text(self.host)})",
                                 "retry later; the table is at its request limit")
        return out

    def _counted(self, state: str) -> str:
        """The counter a state is counted in. Schema 2: QUEUED and RUNNING share one (``QR``), so a claim (and a
        requeue) moves no count and is one conditional write on the job, not a transaction with a counter
        shard (4 write units); RUNNING is counted from the leases index instead (jobs._count_rows)."""
        return QR if self.schema >= 2 and state in (QUEUED, RUNNING) else state

    def _counter_ops(self, delta: dict[tuple[str, str, str], int]) -> list[dict]:
        """UpdateItems adding `delta` to one randomly chosen counter shard per (queue, definition)."""
        grouped: dict[tuple[str, str], dict[str, int]] = {}
        for (queue, definition, state), n in delta.items():
            if n:
                states = grouped.setdefault((queue, definition), {})
                counter = self._counted(state)
                states[counter] = states.get(counter, 0) + n
        ops = []
        for (queue, definition), states in sorted(grouped.items()):
            states = {s: n for s, n in states.items() if n}
            if not states:
                continue
            e = _Expr()
            key = {"pk": {"S": f"cnt#{random.randrange(self.count_shards)}"}, "sk": {"S": _k(queue, definition)}}
            ops.append(_update(self.meta, key, e, set_={"q": queue, "d": definition}, add=states))
        return ops

    def _apply_counts(self, delta: dict) -> None:
        """Count deltas outside a transaction (submission): plain ADDs never conflict."""
        for op in self._counter_ops(delta):
            self.db.update_item(**op)

    def _state_attrs(self, it: dict, state: str, *, ready: bool, now: float, worker: str | None = None) -> dict:
        """Attributes that follow from a job's state: index keys of every GSI and the TTL."""
        job_id, idx = it["id"], it["idx"]
        shard = self._shard(job_id, idx)
        out: dict[str, Any] = {"state": state}
        if idx < 0:
            out["qs"] = self._listing_key(it["queue"], state, shard)
        if ready:
            out["rq"] = _k(it["queue"], it["definition"], str(shard))
            out["rk"] = _rank(it.get("priority", 0), job_id, idx)
        else:
            out["rq"] = out["rk"] = None
        if state == RUNNING:
            if worker is not None:
                out["ls"] = str(shard)
                out["rw"] = worker
        else:
            out["ls"] = out["rw"] = None
        out["expires"] = int(now + self.retention) if _finished(state) else None
        return out

    def _lease_entries(self) -> list[dict]:
        """Every entry of the leases index: the running jobs and elements, with their worker (``rw``), queue and
        definition (schema 2 projects them). Read by the RUNNING counts and by requeue_worker."""
        def shard(k: int) -> list[dict]:
            return list(self._query_all(index="leases", key="ls", value=str(k)))

        return [it for items in self._parallel(shard, list(range(self.index_shards))) for it in items]

    def _listing_group(self, state: str) -> str:
        """The state part of a by_queue key: every active state shares one (schema 2), so a claim, hold or
        release rewrites the entry in place (1 write unit) instead of moving it (2), and qstat of the active
        jobs reads one key per shard instead of three."""
        return ACTIVE if self.schema >= 2 and state in ACTIVE_STATES else state

    def _listing_key(self, queue: str, state: str, shard: int) -> str:
        return _k(queue, self._listing_group(state), str(shard))

    def _array(self, job_id: int, text: str) -> ArraySpec:
        spec = self._specs.get(job_id)
        if spec is None:
            spec = self._specs[job_id] = parse_array(text)
        return spec

    def _spec_of(self, it: dict | None) -> JobSpec | None:
        """The full spec of a job or array record (a large one is read from its own item, then cached)."""
        if it is None or not it.get("spec"):
            return None
        if not it.get("big"):
            return JobSpec.from_dict(json.loads(it["spec"]))
        data = self._spec_cache.get(it["id"])
        if data is None:
            found = self._get(it["id"], SPEC)
            if found is None or "specz" not in found:
                return JobSpec.from_dict(json.loads(it["spec"]))  # only the summary is left
            data = json.loads(zlib.decompress(found["specz"]))
            if len(self._spec_cache) > 256:
                self._spec_cache.clear()
            self._spec_cache[it["id"]] = data
        return JobSpec.from_dict(data)

    def _expire_spec(self, it: dict, now: float) -> None:
        if it.get("big"):
            e = _Expr()
            try:
                self.db.update_item(**_update(self.jobs, _jkey(it["id"], SPEC), e,
                                              set_={"expires": int(now + self.retention)},
                                              cond="attribute_exists(id)"))
            except self.db.exceptions.ConditionalCheckFailedException:
                pass

    @staticmethod
    def _job(it: dict, spec: JobSpec | None = None) -> Job:
        if spec is None and it.get("spec"):
            spec = JobSpec.from_dict(json.loads(it["spec"]))
        total = it.get("a_total") or 0
        worker = it.get("worker")
        if worker and worker.startswith(FENCE):
            worker = worker[len(FENCE):]
        return Job(
            id=it["id"], index=None if it["idx"] < 0 else it["idx"], name=it.get("name", ""),
            user=it.get("user", ""), queue=it.get("queue", ""), definition=it.get("definition", ""),
            state=JobState(it["state"]), reason=it.get("reason", ""), priority=it.get("priority", 0),
            submitted=_f(it.get("submitted")), started=_f(it.get("started")), ended=_f(it.get("ended")),
            exit_code=it.get("exit_code"), attempts=it.get("attempts", 0), retries=it.get("retries", 0),
            worker=worker, lease=_f(it.get("lease")), pid=it.get("pid"), spec=spec, array=it.get("array"),
            array_total=total, array_started=(it.get("a_cursor", 0) - it.get("a_skip", 0)) if total else 0,
            array_done=it.get("a_done", 0), array_failed=it.get("a_failed", 0),
            array_running=it.get("a_running", 0), array_deleted=it.get("a_deleted", 0),
            depends=list(it.get("depends") or []),
            logs={k[len(LOG_PREFIX):]: v for k, v in it.items()
                  if k.startswith(LOG_PREFIX) and k[len(LOG_PREFIX):].isdigit()},
        )

    # resources ------------------------------------------------------------------------------------
    @_public
    def put_resource(self, resource: Resource, *, replace: bool = False) -> None:
        item = _item({"pk": f"res#{resource.KIND}", "sk": resource.name, "body": json.dumps(resource.to_dict()),
                      "updated": time.time()})
        if replace:
            self.db.put_item(TableName=self.meta, Item=item)
            return
        try:
            self.db.put_item(TableName=self.meta, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except self.db.exceptions.ConditionalCheckFailedException:
            raise HyperError(f"{resource.KIND} {resource.name!r} already exists",
                             f"pick another name or update the existing {resource.KIND}") from None

    @_public
    def get_resource(self, kind: str, name: str) -> Resource | None:
        found = self.db.get_item(TableName=self.meta, Key={"pk": {"S": f"res#{kind}"}, "sk": {"S": name}},
                                 ConsistentRead=True).get("Item")
        return RESOURCE_KINDS[kind].from_dict(json.loads(found["body"]["S"])) if found else None

    @_public
    def list_resources(self, kind: str) -> list[Resource]:
        items = self._query_all(table=self.meta, key="pk", value=f"res#{kind}", consistent=True)
        return sorted((RESOURCE_KINDS[kind].from_dict(json.loads(it["body"])) for it in items),
                      key=lambda r: r.name)

    @_public
    def delete_resource(self, kind: str, name: str) -> bool:
        response = self.db.delete_item(TableName=self.meta, Key={"pk": {"S": f"res#{kind}"}, "sk": {"S": name}},
                                       ReturnValues="ALL_OLD")
        return "Attributes" in response

    def _contended(self, job_id: int) -> HyperError:
        return HyperError(f"job {job_id} kept changing while hyper tried to update it ({TX_ATTEMPTS} attempts)",
                          "try again; many workers are finishing elements of it at once")

    def _forget_candidates(self) -> None:
        """New or released jobs of this process: the next claim reads the index again (priorities hold)."""
        self._candidates.clear()

    # workers --------------------------------------------------------------------------------------
    def _worker_key(self, worker: str) -> dict:
        return {"pk": {"S": f"wrk#{zlib.crc32(worker.encode()) % self.count_shards}"}, "sk": {"S": worker}}
