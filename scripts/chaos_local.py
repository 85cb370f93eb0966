#!/usr/bin/env python3
"""Fault injection against the local host, from the installed CLI, in a fresh HYPER_HOME (issue 12).

A benchmark-style script, not a test: it takes minutes, is bounded by --budget, and prints one table.
Every job appends markers to its own file (attempt, start, a tick every 0.1 s, end), so afterwards we can tell:

- lost: a job that never reached a final state, or SUCCEEDED without its end marker;
- run twice at once: an attempt that started before an earlier attempt's last tick (the old one still ran);
- user-visible errors: a qsub/qdel/qstat that failed or printed a traceback where it should have worked.

Phases: kill -9 of random busy workers mid-job (--kills), kill -9 of the agent with workers running and of the
agent with its workers, concurrent submitters with markers (--submitters x --jobs, --batch jobs per qsub call),
qdel racing claims, and a disk-full episode on a small tmpfs (root only; skipped with a note otherwise).
Exit status 1 if any job was lost or ran twice at once.

    python scripts/chaos_local.py                    # the issue's targets: 100 kills, 8 x 500 jobs
    python scripts/chaos_local.py --kills 20 --jobs 50 --budget 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent
TICKING = ('f={m}/$HYPER_JOB_ID; a=$HYPER_ATTEMPT; echo "$a start $(date +%s.%N)" >> $f; i=0; '
           'while [ $i -lt {ticks} ]; do echo "$a tick $(date +%s.%N)" >> $f; sleep 0.1; i=$((i+1)); done; '
           'echo "$a end $(date +%s.%N)" >> $f')
QUICK = 'f={m}/$HYPER_JOB_ID; a=$HYPER_ATTEMPT; echo "$a start $(date +%s.%N)" >> $f; echo "$a end $(date +%s.%N)" >> $f'


class Chaos:
    def __init__(self, home: Path, budget: float):
        self.home = home
        self.marks = home.parent / "marks"
        self.marks.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HYPER_HOME": str(home), "HYPER_LEASE": "10", "HYPER_KILL_GRACE": "1",
                    "HYPER_WORKER_IDLE": "2", "HYPER_AGENT_IDLE": "5"}
        self.env.pop("HYPER_HOST", None)
        self.deadline = time.monotonic() + budget
        self.errors: list[str] = []
        self.lock = threading.Lock()

    # commands -------------------------------------------------------------------------------------------
    def run(self, *argv: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=self.env,
                              timeout=300)
        if (ok and proc.returncode != 0) or "Traceback" in proc.stderr:
            with self.lock:
                self.errors.append(f"{' '.join(argv[:3])}: rc {proc.returncode}: {proc.stderr.strip()[:200]}")
        return proc

    def qsub(self, *argv: str) -> list[str]:
        return self.run("qsub", *argv).stdout.split()

    def sweep(self, n: int, body: str, retries: int = 10) -> list[str]:
        fh = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, dir=self.home.parent)
        fh.write("".join(json.dumps({"n": i}) + "\n" for i in range(n)))
        fh.close()
        try:
            return self.qsub("--retries", str(retries), "--sweep", fh.name, "--", "sh", "-c", body)
        finally:
            os.unlink(fh.name)

    # the store, read directly (a verifier, not a user) -------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.home / 'local' / 'hyper.db'}?mode=ro", uri=True, timeout=30)

    def states(self, ids: list[str]) -> dict[str, tuple[str, int, str]]:
        with self.db() as con:
            rows = con.execute("SELECT id, state, attempts, reason FROM jobs WHERE idx = -1").fetchall()
        wanted = set(ids)
        return {str(i): (s, a, r) for i, s, a, r in rows if str(i) in wanted}

    def wait_all(self, ids: list[str]) -> dict[str, tuple[str, int, str]]:
        while time.monotonic() < self.deadline:
            states = self.states(ids)
            if len(states) == len(ids) and all(s in ("SUCCEEDED", "FAILED", "DELETED") for s, _, _ in states.values()):
                return states
            time.sleep(0.5)
        return self.states(ids)

    # verdicts ---------------------------------------------------------------------------------------------
    def verdict(self, ids: list[str], deleted_ok: bool = False) -> tuple[int, int]:
        states = self.wait_all(ids)
        lost = overlapping = 0
        for jid in ids:
            state = states.get(jid, ("MISSING", 0, ""))[0]
            attempts = self.attempts(jid)
            if state == "SUCCEEDED":
                lost += not any("end" in a for a in attempts.values())
            elif state == "DELETED":
                lost += not deleted_ok
            elif state != "FAILED":
                lost += 1
            overlapping += self.overlaps(attempts)
        return lost, overlapping

    def attempts(self, jid: str) -> dict[int, dict[str, float]]:
        """attempt -> {start, last, end}: when it started, its last sign of life, when it ended."""
        out: dict[int, dict[str, float]] = {}
        path = self.marks / jid
        if not path.exists():
            return out
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            a, kind, t = int(parts[0]), parts[1], float(parts[2])
            rec = out.setdefault(a, {})
            rec.setdefault("start", t) if kind == "start" else None
            rec["last"] = max(rec.get("last", t), t)
            if kind == "end":
                rec["end"] = t
        return out

    @staticmethod
    def overlaps(attempts: dict[int, dict[str, float]]) -> int:
        ordered = [attempts[a] for a in sorted(attempts)]
        return sum(1 for prev, nxt in zip(ordered, ordered[1:]) if "start" in nxt and prev["last"] > nxt["start"])

    # phases -----------------------------------------------------------------------------------------------
    def worker_kills(self, kills: int) -> tuple[int, list[str]]:
        """kill -9 a random worker that holds a RUNNING job, again and again."""
        ids = self.sweep(max(40, kills), TICKING.format(m=self.marks, ticks=8))
        done = 0
        per_job: dict[str, int] = {}
        while done < kills and time.monotonic() < self.deadline:
            time.sleep(random.uniform(0.05, 0.4))
            with self.db() as con:
                rows = con.execute("SELECT j.id, w.pid FROM jobs j JOIN workers w ON w.id = j.worker "
                                   "WHERE j.state = 'RUNNING' AND w.pid IS NOT NULL").fetchall()
            rows = [(str(j), p) for j, p in rows if per_job.get(str(j), 0) < 3]
            if not rows:
                if all(s in ("SUCCEEDED", "FAILED") for s, _, _ in self.states(ids).values()):
                    ids += self.sweep(20, TICKING.format(m=self.marks, ticks=8))
                continue
            jid, pid = random.choice(rows)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            per_job[jid] = per_job.get(jid, 0) + 1
            done += 1
        return done, ids

    def agent_kills(self) -> tuple[int, list[str]]:
        ids = self.sweep(8, TICKING.format(m=self.marks, ticks=15))
        trials = 0
        for with_workers in (False, True, False, True):
            time.sleep(1.0)
            lock = self.home / "local" / "agent.lock"
            try:
                agent = int(lock.read_text().strip())
            except (OSError, ValueError):
                continue
            victims = [agent]
            if with_workers:
                with self.db() as con:
                    victims += [p for (p,) in con.execute("SELECT pid FROM workers WHERE state != 'EXITED' "
                                                          "AND pid IS NOT NULL")]
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            trials += 1
            ids += self.qsub("--", "sh", "-c", QUICK.format(m=self.marks))  # the next qsub starts a new agent
        return trials, ids

    def submitters(self, n: int, jobs: int, batch: int) -> list[str]:
        def one(_: int) -> list[str]:
            out: list[str] = []
            left = jobs
            while left > 0 and time.monotonic() < self.deadline:
                k = min(batch, left)
                out += (self.sweep(k, QUICK.format(m=self.marks), retries=3) if k > 1
                        else self.qsub("--", "sh", "-c", QUICK.format(m=self.marks)))
                left -= k
            return out

        with ThreadPoolExecutor(n) as pool:
            return [jid for part in pool.map(one, range(n)) for jid in part]

    def qdel_races(self, n: int) -> tuple[list[str], int]:
        """Submit, then qdel everything at once while workers claim; a job deleted while queued must never start."""
        ids = self.sweep(n, TICKING.format(m=self.marks, ticks=2))
        self.run("qdel", *ids, ok=False)  # some may have finished already: that is not an error
        after = time.time()
        states = self.wait_all(ids)
        started_after = sum(1 for jid in ids if states.get(jid, ("",))[0] == "DELETED"
                            and any(a.get("start", 0) > after for a in self.attempts(jid).values()))
        return ids, started_after


def stop_agent(home: Path) -> None:
    """SIGTERM this run's agent (its pid is in the lock file); its workers follow."""
    try:
        os.kill(int((home / "local" / "agent.lock").read_text().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def disk_full(budget: float) -> tuple[str, int, int, int, int]:
    """A job fills a 32 MiB tmpfs: only it fails, the rest of the jobs succeed (root only)."""
    if os.geteuid() != 0:
        return "skipped (mounting a tmpfs needs root)", 0, 0, 0, 0
    mount = Path(tempfile.mkdtemp(prefix="hyper-chaos-disk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True).returncode:
        return "skipped (cannot mount a tmpfs here)", 0, 0, 0, 0
    try:
        c = Chaos(mount / "hyper-home", budget)
        hog = c.qsub("--", "sh", "-c", "head -c 100000000 /dev/zero")
        others = c.sweep(10, QUICK.format(m=c.marks), retries=0)
        states = c.wait_all(hog + others)
        lost = sum(1 for j in others if states.get(j, ("",))[0] != "SUCCEEDED")
        lost += states.get(hog[0], ("",))[0] != "FAILED" if hog else 1
        reason = states.get(hog[0], ("", 0, ""))[2] if hog else ""
        c.run("qsub", "-h", "--", "true")  # space is back (the hog's output was truncated): qsub works again
        stop_agent(c.home)
        return f"hog: {reason}", 1 + len(others), lost, 0, len(c.errors)
    finally:
        time.sleep(1)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--submitters", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=500, help="jobs per submitter")
    ap.add_argument("--batch", type=int, default=50, help="jobs per qsub call (--sweep); 1 = one qsub per job")
    ap.add_argument("--qdel", type=int, default=200)
    ap.add_argument("--budget", type=float, default=1200, help="seconds for everything")
    args = ap.parse_args()
    random.seed(12)
    root = Path(tempfile.mkdtemp(prefix="hyper-chaos-"))
    c = Chaos(root / "hyper-home", args.budget)
    rows = []
    t0 = time.monotonic()
    kills, ids = c.worker_kills(args.kills)
    lost, overlap = c.verdict(ids)
    rows.append(("kill -9 busy worker mid-job", kills, len(ids), lost, overlap, len(c.errors)))
    errors = len(c.errors)
    trials, ids = c.agent_kills()
    lost, overlap = c.verdict(ids)
    rows.append(("kill -9 agent (2 of them with its workers)", trials, len(ids), lost, overlap, len(c.errors) - errors))
    errors = len(c.errors)
    ids = c.submitters(args.submitters, args.jobs, args.batch)
    lost, overlap = c.verdict(ids)
    lost += args.submitters * args.jobs - len(ids)  # a submission that never got an id
    rows.append((f"{args.submitters} concurrent submitters x {args.jobs} (batches of {args.batch})",
                 args.submitters, len(ids), lost, overlap, len(c.errors) - errors))
    errors = len(c.errors)
    ids, started_after = c.qdel_races(args.qdel)
    lost, overlap = c.verdict(ids, deleted_ok=True)
    rows.append(("qdel racing claims", 1, len(ids), lost + started_after, overlap, len(c.errors) - errors))
    note, jobs, lost, overlap, errs = disk_full(max(60.0, c.deadline - time.monotonic()))
    rows.append((f"disk full on a 32 MiB tmpfs ({note})", 1 if jobs else 0, jobs, lost, overlap, errs))
    wall = time.monotonic() - t0

    head = ("phase", "trials", "jobs", "lost", "ran twice at once", "user-visible errors")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    total = ("total", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows),
             sum(r[4] for r in rows), sum(r[5] for r in rows))
    print(line(total))
    print(f"\nwall {wall:.0f} s, HYPER_HOME {c.home}, cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    for e in c.errors[:10]:
        print(f"error: {e}")
    stop_agent(c.home)
    return 1 if total[3] or total[4] else 0


if __name__ == "__main__":
    sys.exit(main())
