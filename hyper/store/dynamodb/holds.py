"""qdel and qhold/qrls on the aws host's job store."""

from __future__ import annotations

from typing import Iterable

from hyper.aws.attributes import _item
from hyper.aws.dynamo import TX_ATTEMPTS, _Expr, _update
from hyper.parsing.arrays import ArraySpec
from hyper.parsing.jobids import JobRef
from hyper.store.base import (DeleteResult, already_finished, hold_refusal, not_an_array, unknown_job)
from hyper.store.dynamodb.core import _Core
from hyper.store.dynamodb.keys import (DELETED, HELD, PARENT, RUNNING, _finished, _jkey, _ord, _public, _weight)


class _Holds(_Core):
    @_public
    def delete(self, refs: Iterable[JobRef], now: float) -> list[DeleteResult]:
        """Mark jobs DELETED; running ones are stopped by their worker, which sees the state change."""
        results: list[DeleteResult] = []
        for ref in refs:
            p = self._get(ref.id, PARENT)
            if p is None:
                results.append(unknown_job(ref.text))
            elif ref.indices is None:
                results.append(self._delete_whole(ref.id, now))
            elif not p.get("array"):
                results.append(not_an_array(ref.text, ref.id))
            else:
                results.extend(self._delete_elements(p, ref.indices, now))
        return results

    def _delete_whole(self, job_id: int, now: float) -> DeleteResult:
        for _ in range(TX_ATTEMPTS):
            p = self._get_known(job_id, PARENT)
            label = f"{job_id}[]" if p.get("array") else str(job_id)
            state = p["state"]
            if _finished(state):
                return already_finished(label, state)
            q, d = p["queue"], p["definition"]
            e = _Expr()
            sets = {"ended": now, "reason": "deleted by qdel"}
            sets.update(self._state_attrs(p, DELETED, ready=False, now=now))
            if p.get("array"):
                remaining = _weight(p)
                cond = e.eq(state=state, a_cursor=p["a_cursor"], a_skip=p["a_skip"])
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets,
                             add={"a_done": remaining, "a_deleted": remaining}, cond=cond)
                delta = {(q, d, state): -remaining, (q, d, DELETED): remaining}
            else:
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=e.eq(state=state))
                delta = {(q, d, state): -1, (q, d, DELETED): 1}
            if self._transact([("Update", op)], delta):
                break
        else:
            raise self._contended(job_id)
        if p.get("array"):
            # no element can start any more (claims need the array QUEUED): delete the ones that did
            for el in list(self._elements(job_id, active_only=True)):
                self._delete_started(p, el, now)
            self._resolve_dependents(job_id, None, now)
        else:
            self._resolve_dependents(job_id, PARENT, now)
        self._expire_spec(p, now)
        return DeleteResult(label, True)

    def _delete_started(self, p: dict, el: dict, now: float) -> str | None:
        """Delete a started (or requeued) element; returns None, or the state it had already ended in."""
        job_id, index = p["id"], el["idx"]
        for attempt in range(TX_ATTEMPTS):
            if attempt:
                current = self._get(job_id, index)
                if current is None:
                    return "gone"
                el = current
            state = el["state"]
            if _finished(state):
                return state
            e = _Expr()
            sets = {"ended": now, "reason": "deleted by qdel"}
            sets.update(self._state_attrs(el, DELETED, ready=False, now=now))
            ops = [("Update", _update(self.jobs, _jkey(job_id, el["idx"]), e, set_=sets, cond=e.eq(state=state))),
                   ("Update", _update(self.jobs, _jkey(job_id, PARENT), _Expr(),
                                      add={"a_running": -int(state == RUNNING), "a_done": 1, "a_deleted": 1}))]
            if self._transact(ops, {(el["queue"], el["definition"], state): -1,
                                    (el["queue"], el["definition"], DELETED): 1}):
                return None
        raise self._contended(job_id)

    def _delete_elements(self, p: dict, indices: ArraySpec, now: float) -> list[DeleteResult]:
        job_id = p["id"]
        spec = self._array(job_id, p["array"])
        results = []
        for index in indices:
            label = f"{job_id}[{index}]"
            if spec.position_of(index) is None:
                results.append(unknown_job(label, f"not an index of {job_id}[]"))
                continue
            result = None
            for _ in range(TX_ATTEMPTS):
                el = self._get(job_id, index)
                if el is not None:
                    ended = self._delete_started(p, el, now)
                    result = DeleteResult(label, True) if ended is None else already_finished(label, ended)
                    break
                parent = self._get_known(job_id, PARENT)
                if _finished(parent["state"]):
                    result = already_finished(label, parent["state"])
                    break
                # not started: a DELETED element item the cursor will step over, counted as done at once
                item = {"id": job_id, "idx": index, "ord": _ord(job_id, index), "name": parent["name"],
                        "user": parent["user"], "queue": parent["queue"], "definition": parent["definition"],
                        "reason": "deleted by qdel", "priority": parent.get("priority", 0),
                        "submitted": parent.get("submitted"), "ended": now, "attempts": 0,
                        "retries": parent.get("retries", 0)}
                item.update(self._state_attrs(item, DELETED, ready=False, now=now))
                e = _Expr()
                ops = [("Put", {"TableName": self.jobs, "Item": _item(item),
                                "ConditionExpression": "attribute_not_exists(id)"}),
                       ("Update", _update(self.jobs, _jkey(job_id, PARENT), e,
                                          add={"a_skip": 1, "a_done": 1, "a_deleted": 1},
                                          cond=e.eq(state=parent["state"])))]
                q, d = parent["queue"], parent["definition"]
                if self._transact(ops, {(q, d, parent["state"]): -1, (q, d, DELETED): 1}):
                    result = DeleteResult(label, True)
                    break
            if result is None:
                raise self._contended(job_id)
            results.append(result)
            if result.ok:
                self._resolve_dependents(job_id, index, now)
        self._settle_array(job_id, now)
        return results

    @_public
    def set_hold(self, refs: Iterable[JobRef], hold: bool, now: float) -> list[DeleteResult]:
        """qhold / qrls on whole jobs: a held job keeps its place but is not started."""
        self._forget_candidates()
        results = []
        for ref in refs:
            label = ref.text
            p = self._get(ref.id, PARENT)
            if p is None:
                results.append(unknown_job(label))
                continue
            refused = hold_refusal(ref, p["state"], bool(p.get("uhold")), hold)
            if refused is not None:
                results.append(refused)
                continue
            if not hold:
                e = _Expr()
                try:
                    self.db.update_item(**_update(self.jobs, _jkey(ref.id, PARENT), e, set_={"uhold": False},
                                                  cond=e.eq(uhold=True)))
                except self.db.exceptions.ConditionalCheckFailedException:
                    pass  # released by someone else meanwhile
                self._reevaluate(ref.id, now)
                results.append(DeleteResult(label, True))
                continue
            for _ in range(TX_ATTEMPTS):
                state = p["state"]
                refused = hold_refusal(ref, state, True, hold)  # (read again: it may have started meanwhile)
                if refused is not None:
                    results.append(refused)
                    break
                e = _Expr()
                sets = {"uhold": True, "reason": "held by user (release with qrls)"}
                sets.update(self._state_attrs(p, HELD, ready=False, now=now))
                weight_read = {"a_cursor": p["a_cursor"], "a_skip": p["a_skip"]} if p.get("array") else {}
                cond = e.eq(state=state, **weight_read)
                w = _weight(p)
                moved = {} if state == HELD else {(p["queue"], p["definition"], state): -w,
                                                  (p["queue"], p["definition"], HELD): w}  # held again: no move
                if self._transact([("Update", _update(self.jobs, _jkey(ref.id, PARENT), e, set_=sets, cond=cond))],
                                  moved):
                    results.append(DeleteResult(label, True))
                    break
                p = self._get_known(ref.id, PARENT)
            else:
                raise self._contended(ref.id)
        return results
