"""Read and write units a DynamoDB client consumes, per table and index, billed by DynamoDB's size rules.

moto reports no per-index capacity, so the meter works it out the way DynamoDB bills it, from before and after
images of every item written (read with a second client, so the metering itself is not counted):

- a write costs ceil(max(size before, size after) / 1 KB) write units; in TransactWriteItems twice that; a
  write whose condition failed is not counted (on AWS it costs the same units: the figures are a floor);
- each GSI whose entry appears, disappears or changes is written too: a changed key is a delete plus a put,
  a changed projected attribute one put, each ceil(entry size / 1 KB) units; an entry that does not change
  costs nothing;
- a read costs ceil(size / 4 KB) read units per item (GetItem, BatchGetItem) or per request (Query, summed
  over the items read), half that when eventually consistent.

It hooks botocore's own events (``before-call`` / ``after-call``) on the client the store uses, exactly as
the SDK runs them: nothing is patched. Item sizes follow the DynamoDB developer guide (name + value bytes;
numbers ~1 byte per two digits + 1; 3 bytes per list/map plus 1 per element).
"""

from __future__ import annotations

import collections
import math
import threading


def attr_size(value: dict) -> float:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return math.ceil(len(v.lstrip("-").replace(".", "").lstrip("0") or "0") / 2) + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(attr_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attr_size(x) + 1 for k, x in v.items())
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(x)) for x in v)
    raise ValueError(kind)


def item_size(item: dict | None) -> float:
    return 0 if not item else sum(len(k.encode()) + attr_size(v) for k, v in item.items())


class Meter:
    """Counts units on ``client``; ``units`` maps (table or table:index, "R"/"W") to units consumed."""

    def __init__(self, client, reader):
        self.client, self.reader = client, reader
        self.units: dict[tuple[str, str], float] = collections.defaultdict(float)
        self.calls: collections.Counter = collections.Counter()
        self._schemas: dict[str, dict] = {}
        self._local = threading.local()  # the store queries shards on a thread pool
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def reset(self) -> None:
        self.units.clear()
        self.calls.clear()

    def snapshot(self) -> dict[tuple[str, str], float]:
        return dict(self.units)

    # table layout
    def _schema(self, table: str) -> dict:
        if table not in self._schemas:
            t = self.reader.describe_table(TableName=table)["Table"]
            keys = [k["AttributeName"] for k in t["KeySchema"]]
            gsis = []
            for g in t.get("GlobalSecondaryIndexes", []):
                gkeys = [k["AttributeName"] for k in g["KeySchema"]]
                proj = g["Projection"]
                gsis.append((g["IndexName"], gkeys, proj["ProjectionType"], proj.get("NonKeyAttributes", [])))
            self._schemas[table] = {"keys": keys, "gsis": gsis}
        return self._schemas[table]

    def _key(self, table: str, item: dict) -> dict:
        return {k: item[k] for k in self._schema(table)["keys"]}

    def _image(self, table: str, key: dict) -> dict | None:
        return self.reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    # writes: (table, key) of every item an operation writes, with its before image
    def _writes(self, op: str, params: dict) -> list[tuple[str, dict, int]]:
        out = []
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params["Key"] if "Key" in params else self._key(params["TableName"], params["Item"])
            out.append((params["TableName"], key, 1))
        elif op == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                if kind == "ConditionCheck":
                    continue
                key = body["Key"] if "Key" in body else self._key(body["TableName"], body["Item"])
                out.append((body["TableName"], key, 2))
        elif op == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for r in requests:
                    body = r.get("PutRequest") or r.get("DeleteRequest")
                    key = body["Key"] if "Key" in body else self._key(table, body["Item"])
                    out.append((table, key, 1))
        return out

    def _before(self, params, model, **_):
        op = model.name
        self.calls[op] += 1
        writes = self._writes(op, params)
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append((op, params, [(t, k, f, self._image(t, k)) for t, k, f in writes]))

    def _after(self, model, parsed, **_):
        op, params, writes = self._local.stack.pop()
        if "Error" in parsed and parsed["Error"].get("Code"):
            return  # a failed condition, a cancelled transaction: not counted (a floor)
        for table, key, factor, before in writes:
            after = self._image(table, key)
            self._bill_write(table, before, after, factor)
        self._bill_read(op, params, parsed)

    def _bill_write(self, table: str, before: dict | None, after: dict | None, factor: int) -> None:
        self.units[(table, "W")] += factor * max(1, math.ceil(max(item_size(before), item_size(after)) / 1024))
        for name, gkeys, ptype, nonkey in self._schema(table)["gsis"]:
            old, new = self._entry(table, before, gkeys, ptype, nonkey), self._entry(table, after, gkeys, ptype, nonkey)
            where = (f"{table}:{name}", "W")
            if old is None and new is None:
                continue
            if old is None or new is None:
                self.units[where] += math.ceil(item_size(old or new) / 1024)
            elif any(old[k] != new[k] for k in gkeys):
                self.units[where] += math.ceil(item_size(old) / 1024) + math.ceil(item_size(new) / 1024)
            elif old != new:
                self.units[where] += math.ceil(item_size(new) / 1024)

    def _entry(self, table: str, item: dict | None, gkeys, ptype: str, nonkey) -> dict | None:
        if not item or any(k not in item for k in gkeys):
            return None
        keep = set(gkeys) | set(self._schema(table)["keys"])
        if ptype == "ALL":
            return dict(item)
        if ptype == "INCLUDE":
            keep |= set(nonkey)
        return {k: v for k, v in item.items() if k in keep}

    def _bill_read(self, op: str, params: dict, parsed: dict) -> None:
        if op == "GetItem":
            half = 1 if params.get("ConsistentRead") else 0.5
            self.units[(params["TableName"], "R")] += half * max(1, math.ceil(item_size(parsed.get("Item")) / 4096))
        elif op == "BatchGetItem":
            for table, items in parsed.get("Responses", {}).items():
                half = 1 if params["RequestItems"][table].get("ConsistentRead") else 0.5
                self.units[(table, "R")] += sum(half * max(1, math.ceil(item_size(i) / 4096)) for i in items)
        elif op == "Query":
            half = 1 if params.get("ConsistentRead") else 0.5
            where = params["TableName"] + (f":{params['IndexName']}" if params.get("IndexName") else "")
            size = sum(item_size(i) for i in parsed.get("Items", []))
            self.units[(where, "R")] += half * max(1, math.ceil(size / 4096))
