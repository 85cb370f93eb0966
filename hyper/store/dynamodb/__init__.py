"""The aws host's store: the Store protocol on two DynamoDB tables (see hyper/aws/tables.py, docs/dynamodb.md).

Same semantics as the SQLite store, which is the reference; what differs is how atomicity is had without a
database-wide lock:

- Every state change is a *conditional* write. A claim is ``state = QUEUED`` and still in the ready index;
  an array element's claim advances the array record's cursor on the condition that cursor and skip still
  hold the values read, and puts the element item on the condition that it does not exist, in one
  TransactWriteItems. A finish is ``state = RUNNING AND worker = me AND attempts = n``. Losing a race is
  a ConditionalCheckFailed: the loser re-reads, never overwrites.
- Counts per (queue, definition, state) live in counter items sharded ``count_shards`` ways; each
  transition adds its delta to a randomly chosen shard *in the same transaction* as the transition, so
  counts are exact. Submission is the exception (BatchWriteItem is not transactional): its counts are
  added before the jobs are written and taken back if writing fails, so a crash can only over-count.
- An array is one record with counters (a_total, a_cursor, a_skip, a_running, a_done, a_failed,
  a_deleted, a_limit); elements become items only when they start (or are deleted before they start).
  Derived fields (the array's state and whether it is in the ready index) are recomputed by
  ``_settle_array`` after every change, with a condition on the counters it read.
- Dependency edges are meta items keyed by the target; a target's end re-evaluates its dependents. Each
  side writes before it reads (the submitter writes edges then re-reads targets, an ending target writes
  its state then reads edges), so a dependent is never left waiting for an end it missed.
- A lost job (expired lease, dead worker) is first *fenced* (its worker becomes ``lost:<worker>`` on the
  condition that the lease did not move), then handed to ``on_lost``, then requeued or failed: the late
  worker's heartbeat sees it no longer owns the job, and nobody can claim it before ``on_lost`` ran.

Layout: the DynamoDB plumbing (expressions, batched writes, queries, transactions) is hyper/aws/dynamo.py;
``keys`` holds the key helpers and constants, ``core`` opening the tables and item reads, and one mixin per
concern: ``jobs`` (ids, submit, reads, counts), ``holds`` (qdel, qhold/qrls), ``claims`` (claims, array
settling, heartbeats), ``finish`` (finish, lost jobs, dependencies) and ``workers`` (worker registry, scheduler
memory).
"""

from __future__ import annotations

import botocore.exceptions as bx

from hyper.aws.dynamo import BATCH_SIZE, GET_BATCH, TX_ATTEMPTS, TxResult, _Expr, _Raw, _update, batch_write
from hyper.store.dynamodb.claims import _Claims
from hyper.store.dynamodb.finish import _Finish
from hyper.store.dynamodb.holds import _Holds
from hyper.store.dynamodb.jobs import _Jobs
from hyper.store.dynamodb.keys import ID_BLOCK, PARENT, SPEC, _jkey
from hyper.store.dynamodb.workers import _Workers

__all__ = ["BATCH_SIZE", "DynamoStore", "GET_BATCH", "ID_BLOCK", "PARENT", "SPEC", "TX_ATTEMPTS", "TxResult",
           "_Expr", "_Raw", "_jkey", "_update", "batch_write", "bx"]


class DynamoStore(_Jobs, _Holds, _Claims, _Finish, _Workers):
    """Store protocol on an aws host's DynamoDB tables; thread-safe, any number of processes."""
