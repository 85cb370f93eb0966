"""Keys, constants and small item helpers of the aws host's job store (see __init__.py)."""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any, Callable, Concatenate, ParamSpec, Protocol, TypeVar

from hyper.aws import session as aws
from hyper.models import Job
from hyper.states import JobState

if TYPE_CHECKING:
    from hyper.config import Host

PARENT, SPEC = -1, -2  # idx of a job / array record, and of a job's large spec
INLINE_SPEC_MAX = 2048  # spec JSON up to this many bytes stays on the job item
MAX_SPEC_BYTES = 350_000  # compressed; an item holds at most 400 KB
ID_BLOCK = 1_000_000  # id shards interleave blocks of this many ids
PRIORITY_BASE = 2**31
PAGE = 16  # ready-index candidates read per shard and page
MAX_CANDIDATES = 64  # a claim gives up (returns None) after trying this many candidates
CANDIDATE_TTL = 2.0  # seconds a worker reuses the ready candidates it read (other processes' submissions
#                      and priorities are seen at most this late; this process's own at once)
FENCE = "lost:"
LEASE_MARGIN = 5.0  # the sweep waits this long past a worker's lease (clock skew, the kill landing); the worker has
#                    stopped its job by its lease's end (hyper/worker/fence.py)
SPEC_TTL = 400 * 86400  # a large spec outlives any queued job; set to ended + retention when the job ends
ACTIVE_STATES = ("HELD", "QUEUED", "RUNNING")
QR = "QR"  # schema 2: the counter of queued and running tasks together (core._counted)
ACTIVE = "ACTIVE"  # the by_queue key part every active state shares (schema 2; core._listing_key)
MAX_AHEAD = 16  # array elements one claim may take (claim_many): 16 puts + parent + counters in one transaction
LOG_PREFIX = "lg"  # lg<attempt>: where that attempt's output is in CloudWatch Logs (hyper.aws.logs.LogWindow)
MAX_LEASE = 900.0  # a long job's lease grows with its age up to this (host setting max_lease; fence.py)
QUEUES_KEY = {"pk": {"S": "queues"}, "sk": {"S": "seen"}}  # meta: every queue a job was submitted to (names)
QUEUED, RUNNING, HELD, DELETED = "QUEUED", "RUNNING", "HELD", "DELETED"


# keys --------------------------------------------------------------------------------------------------
def _k(*parts: str) -> str:
    """A composite key; '#' and '%' inside names are escaped so (a#b, c) and (a, b#c) never collide."""
    return "#".join(str(p).replace("%", "%25").replace("#", "%23") for p in parts)


def _jkey(job_id: int, idx: int) -> dict:
    return {"id": {"N": str(job_id)}, "idx": {"N": str(idx)}}


def _ord(job_id: int, idx: int) -> int:
    return (job_id << 32) | (idx + 1)


def _rank(priority: int, job_id: int, idx: int) -> str:
    """Ready-index sort key: higher priority first, then id, then index (the SQLite store's order)."""
    return f"{PRIORITY_BASE - int(priority):011d}#{job_id:015d}#{idx + 1:010d}"


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _idx(job: Job) -> int:
    return PARENT if job.index is None else job.index


def _weight(it: dict) -> int:
    """Tasks an item stands for in the counts: 1, or an array's elements that have not started."""
    if it["idx"] >= 0 or not it.get("a_total"):
        return 1
    return it["a_total"] - it.get("a_cursor", 0) - it.get("a_skip", 0)


def _finished(state: str) -> bool:
    return JobState(state).finished



class _OnHost(Protocol):
    """What ``_public`` needs of the store it wraps: the host its errors name."""

    host: Host


_S = TypeVar("_S", bound=_OnHost)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _public(fn: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Public methods answer botocore failures with one-line HyperErrors naming the host."""

    @wraps(fn)
    def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with aws.aws_errors(self.host, "dynamodb", fn.__name__.strip("_")):
            return fn(self, *args, **kwargs)

    return wrapper
