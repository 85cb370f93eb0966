"""The DynamoDB tables of an aws host: definitions (pure, for --dry-run), create, check, delete.

Two tables per host, named ``<prefix>jobs`` and ``<prefix>meta`` (prefix: the host's ``table_prefix``, else
``hyper-<host>-``, so two deployments in one account never share a table). Both are on-demand
(PAY_PER_REQUEST) with TTL on the ``expires`` attribute, which is set only on finished jobs, exited workers
and spent dependency edges. Layout, keys and the reasons behind them: docs/dynamodb.md.

jobs (hash ``id`` N, range ``idx`` N): ``idx = -1`` a single job or an array record, ``idx >= 0`` a started
array element, ``idx = -2`` a large job spec (zlib, Binary). GSIs, all sharded (``#<shard>`` suffix):
  ready      rq = queue#definition#shard, rk = priority#id#idx   sparse: only claimable jobs
  by_queue   qs = queue#ACTIVE#shard (held, queued or running) or queue#<final state>#shard,
             ord = id<<32 | idx+1                                jobs and arrays, never elements (qstat -u
             filters it by user: no index of its own, which cost 5 write units per job)
  leases     ls = shard,                  lease (+ rw)           sparse: only RUNNING (expired-lease sweep, and
             the jobs of a worker seen dead, filtered by rw); the lease is the claim's: heartbeats renew the
             *worker's* item, so no beat rewrites an index key
Tables made before schema 2 also have by_user and by_worker and key by_queue per active state; the store
reads the schema from the config item and keys its writes the way its tables were made.
meta (hash ``pk`` S, range ``sk`` S): config, id counters, count shards, resources, workers, dependency edges.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from hyper.aws.names import prefix, table_names  # noqa: F401  (tables.prefix/table_names: their old home)
from hyper.config import Host
from hyper.errors import HyperError

if TYPE_CHECKING:
    from hyper.aws.session import AwsClient

TTL_ATTRIBUTE = "expires"
# 2: by_queue keys every active state under one ACTIVE key (a claim rewrites one index entry instead of moving it,
# and qstat reads a third of the keys); no by_user and no by_worker index (qstat -u filters by_queue, a dead
# worker's jobs are found in the leases index); one counter for queued and running tasks, RUNNING counted from
# the leases index (a claim is one conditional write). Tables keep the schema they were made with (config item).
SCHEMA = 2

# shard counts written once into the meta table's config item when the tables are created
DEFAULT_SETTINGS = {
    "index_shards": 16,  # GSI key shards: 16 x 1,000 writes/s per (queue, state) before an index partition is hot
    "count_shards": 32,  # counter items per (queue, definition): transaction conflicts fall with more shards
    "id_shards": 16,  # id counters: shard 0 hands out 1, 2, 3...; the others take over when it is throttled
    "retention_days": 30,  # finished jobs expire (TTL) this long after they end
}

# attributes the listing indexes carry: what `qstat`'s table needs and nothing more. No lease / pid
# (heartbeats would rewrite two index entries for nothing) and no spec: a spec holds the whole script and
# environment (up to 2 KB inline), which would be copied into both indexes on every transition and double
# their write units. `qstat -f` / `--output json` read specs from the base table (one BatchGetItem per 100).
LIST_ATTRIBUTES = [
    "name", "user", "queue", "definition", "state", "reason", "priority", "submitted", "started", "ended",
    "exit_code", "attempts", "retries", "worker", "array", "a_total", "a_cursor", "a_skip",
    "a_running", "a_done", "a_failed", "depends",
]




def settings(host: Host) -> dict[str, int]:
    """Shard counts and retention for a new host: defaults, overridden by the host's own settings."""
    out = dict(DEFAULT_SETTINGS)
    for key in out:
        raw = (host.extra or {}).get(key)
        if raw is None:
            continue
        try:
            out[key] = int(raw)
        except (TypeError, ValueError):
            raise HyperError(f"host setting {key}={raw!r} is not a whole number", f"set it like {key}: 16") from None
        if out[key] < 1:
            raise HyperError(f"host setting {key}={raw!r} must be 1 or more", f"set it like {key}: 16")
    return out


def _sse(host: Host) -> dict:
    """Encryption at rest: the host's own KMS key when the host setting ``kms_key`` names one, else AWS-owned.
    The setting is sent as given (DynamoDB takes an id, ARN or alias); ``ensure_tables`` checks it with KMS
    first (``hyper.aws.kms.resolve``)."""
    key = (host.extra or {}).get("kms_key")
    if not key:
        return {"Enabled": True}
    return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": str(key)}


def _gsi(name: str, hash_key: str, range_key: str, projection: dict) -> dict:
    return {"IndexName": name,
            "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"},
                          {"AttributeName": range_key, "KeyType": "RANGE"}],
            "Projection": projection}


def table_definitions(host: Host) -> list[dict]:
    """The create_table requests for a host (pure: --dry-run prints exactly these)."""
    names = table_names(host)
    listing = {"ProjectionType": "INCLUDE", "NonKeyAttributes": LIST_ATTRIBUTES}
    jobs = {
        "TableName": names["jobs"],
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": t} for n, t in (
                ("id", "N"), ("idx", "N"), ("rq", "S"), ("rk", "S"), ("qs", "S"), ("ord", "N"), ("ls", "S"),
                ("lease", "N"))
        ],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "idx", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            _gsi("ready", "rq", "rk", {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["array"]}),
            _gsi("by_queue", "qs", "ord", listing),
            # keyed by the claim's lease, which a registered worker's heartbeat never moves (it renews its own
            # worker item, 1 write unit, no index): the sweep checks a candidate's worker (rw) before its job
            # and carries each running job's queue and definition: the RUNNING counts are read from it (schema 2)
            _gsi("leases", "ls", "lease", {"ProjectionType": "INCLUDE",
                                           "NonKeyAttributes": ["rw", "queue", "definition"]}),
        ],
        "Tags": [{"Key": "hyper:host", "Value": host.name}],
        "DeletionProtectionEnabled": True,  # a stray delete-table cannot drop every job; purge turns it off first
        "SSESpecification": _sse(host),
    }
    meta = {
        "TableName": names["meta"],
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "Tags": [{"Key": "hyper:host", "Value": host.name}],
        "DeletionProtectionEnabled": True,
        "SSESpecification": _sse(host),
    }
    return [jobs, meta]


def config_item(host: Host) -> dict:
    """The meta item that fixes shard counts for the life of the tables (every client reads it), and names
    the host's admins (hyper/aws/identity.py): only the admin policy may write it."""
    from hyper.aws.identity import initial_admins

    s = settings(host)
    item = {"pk": {"S": "config"}, "sk": {"S": "config"}, "schema": {"N": str(SCHEMA)},
            "created": {"N": str(int(time.time()))}, "host": {"S": host.name},
            "admins": {"L": [{"S": a} for a in initial_admins(host)]}}
    item.update({k: {"N": str(v)} for k, v in s.items()})
    return item


# talking to DynamoDB ---------------------------------------------------------------------------------
def _client(host: Host) -> AwsClient:
    from hyper.aws.session import client

    return client(host, "dynamodb")


def _describe(db: AwsClient, name: str) -> dict | None:
    try:
        return db.describe_table(TableName=name)["Table"]
    except db.exceptions.ResourceNotFoundException:
        return None


def owner(host: Host) -> str | None:
    """The host name recorded in an existing deployment's config item ("" if none recorded); None: no tables."""
    from hyper.aws.session import aws_errors

    with aws_errors(host, "dynamodb", "get_item"):
        db = _client(host)
        try:
            item = db.get_item(TableName=table_names(host)["meta"], ConsistentRead=True,
                               Key={"pk": {"S": "config"}, "sk": {"S": "config"}}).get("Item")
        except db.exceptions.ResourceNotFoundException:
            return None
    return (item or {}).get("host", {}).get("S", "")


def tables_exist(host: Host) -> bool:
    """True when every table of the host exists (in any status but DELETING)."""
    from hyper.aws.session import aws_errors

    with aws_errors(host, "dynamodb", "describe_table"):
        db = _client(host)
        for name in table_names(host).values():
            table = _describe(db, name)
            if table is None or table.get("TableStatus") == "DELETING":
                return False
    return True


def ensure_tables(host: Host, wait: bool = True, timeout: float = 600) -> list[str]:
    """Create the host's tables if missing (idempotent, safe to race); returns the names it created.

    With ``wait`` it waits until tables and indexes are ACTIVE, turns TTL on and writes the config item.
    Without it, a store opened later writes the config item itself; call again with ``wait`` for TTL.
    """
    from hyper.aws.kms import resolve
    from hyper.aws.session import aws_errors

    resolve(host)  # the tables' KMS key (host setting kms_key) exists and is enabled, before any table is made
    created = []
    with aws_errors(host, "dynamodb", "create_table"):
        db = _client(host)
        for definition in table_definitions(host):
            name = definition["TableName"]
            table = _describe(db, name)
            if table is not None and table.get("TableStatus") == "DELETING":
                _wait(db, name, lambda t: t is None, timeout, "deleted")
                table = None
            if table is None:
                try:
                    db.create_table(**definition)
                    created.append(name)
                except db.exceptions.ResourceInUseException:
                    pass  # another process is creating it right now: fine
        if not wait:
            return created
        for definition in table_definitions(host):
            _wait(db, definition["TableName"], _active, timeout, "ACTIVE")
            _enable_ttl(db, definition["TableName"])
            _enable_pitr(db, definition["TableName"])
        try:
            db.put_item(TableName=table_names(host)["meta"], Item=config_item(host),
                        ConditionExpression="attribute_not_exists(pk)")
        except db.exceptions.ConditionalCheckFailedException:
            pass  # the first creator's shard counts stay: every client must agree on them
    return created


def _active(table: dict | None) -> bool:
    if table is None or table.get("TableStatus") != "ACTIVE":
        return False
    return all(g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in table.get("GlobalSecondaryIndexes", []))


def _wait(db: AwsClient, name: str, done: Callable[[dict | None], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        table = _describe(db, name)
        if done(table):
            return
        if time.monotonic() > deadline:
            raise HyperError(f"DynamoDB table {name} did not become {what} within {timeout:g} s",
                             "look at the table in the AWS console; run the command again to resume")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _enable_ttl(db: AwsClient, name: str) -> None:
    status = db.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if status.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and status.get("AttributeName") == TTL_ATTRIBUTE:
        return
    try:
        db.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                           "AttributeName": TTL_ATTRIBUTE})
    except db.exceptions.ClientError as exc:  # a racing creator enabled it first
        if "already enabled" not in str(exc).lower() and "TimeToLive is already" not in str(exc):
            raise


def _enable_pitr(db: AwsClient, name: str) -> None:
    """Point-in-time recovery (35 days of restores): create_table cannot ask for it, so it is turned on here."""
    desc = db.describe_continuous_backups(TableName=name).get("ContinuousBackupsDescription", {})
    if desc.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED":
        return
    db.update_continuous_backups(TableName=name,
                                 PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})


def delete_tables(host: Host, wait: bool = False, timeout: float = 600) -> list[str]:
    """Delete the host's tables (every job, resource and counter in them); returns the names deleted."""
    from hyper.aws.session import aws_errors

    deleted = []
    with aws_errors(host, "dynamodb", "delete_table"):
        db = _client(host)
        for name in table_names(host).values():
            try:
                table = _describe(db, name)
                if table is not None and table.get("DeletionProtectionEnabled"):
                    db.update_table(TableName=name, DeletionProtectionEnabled=False)
                db.delete_table(TableName=name)
                deleted.append(name)
            except db.exceptions.ResourceNotFoundException:
                continue
            except db.exceptions.ResourceInUseException:
                deleted.append(name)  # already being deleted
        if wait:
            for name in deleted:
                _wait(db, name, lambda t: t is None, timeout, "deleted")
    return deleted
