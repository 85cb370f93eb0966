"""Hosts (control planes): create, list, select, delete and adopt them.

A host definition is a few names (type, main region, profile, table prefix, endpoint) kept in
``$HYPER_HOME/hosts.yaml`` (0600). It never holds a secret: an aws host names a profile, and boto3's
standard credential chain does the rest. On aws, creating a host creates its DynamoDB tables first and
writes the host file only once they are ACTIVE, so a failed create leaves nothing half-made behind.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import Any

from hyper.config import DEFAULT_HOST, Host, load_hosts, save_hosts
from hyper.errors import HyperError, UsageError

HOST_TYPES = ("local", "aws")
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")  # also starts stack, queue and role names


@dataclass
class HostRow:
    host: Host
    selected: bool

    def to_row(self) -> dict:
        h = self.host
        where = str(h.data_dir) if h.type == "local" else f"{tables_prefix(h)}* in {h.main_region}"
        return {"name": h.name, "type": h.type, "selected": "*" if self.selected else "",
                "main_region": h.main_region or "", "profile": h.profile or "",
                "endpoint_url": h.endpoint_url or "", "state": where}


def tables_prefix(host: Host) -> str:
    return host.table_prefix if host.table_prefix is not None else f"hyper-{host.name}-"


def check_host_name(name: str) -> None:
    if not _HOST_NAME.fullmatch(name):
        raise UsageError(f"host name {name!r} is not valid",
                         "use lower-case letters, digits and -, starting with a letter, at most 31 characters")


def _check_aws_fields(main_region: str | None, table_prefix: str | None, endpoint_url: str | None) -> str:
    """The main region, once every aws field is known good."""
    from hyper.services.resources import check_name

    if not main_region:
        raise UsageError("an aws host needs a main region (where its tables live)", "add --main-region us-east-1")
    check_name("region", main_region)
    if table_prefix is not None and not _PREFIX.fullmatch(table_prefix):
        raise UsageError(f"table prefix {table_prefix!r} is not valid",
                         "start with a letter; letters, digits and - only (it begins every AWS name of the host)")
    if endpoint_url and not re.match(r"^https?://[^\s/]+", endpoint_url):
        raise UsageError(f"endpoint URL {endpoint_url!r} is not an http(s) URL", "e.g. http://127.0.0.1:5000")
    return main_region


# host settings an admin may set (hosts.yaml, beside the host's fields): name -> (parse, example)
AWS_SETTINGS = {
    "index_shards": "int", "count_shards": "int", "id_shards": "int", "retention_days": "int",
    "retry_mode": "mode", "max_attempts": "int", "batch_submit_rate": "float", "worker_idle": "float",
    "weights_refresh": "float", "weights_target_vcpus": "int",
    "admins": "list", "env_deny": "list", "kms_key": "text",
}
# what a local host takes: who may act on others' jobs, and extra credential patterns qsub never passes
LOCAL_SETTINGS = ("admins", "env_deny")


def check_settings(type_: str, settings: dict) -> dict:
    """Known keys with values that parse; never a host field (name, type...), never on a local host."""
    if type_ != "aws" and set(settings) - set(LOCAL_SETTINGS):
        raise UsageError("--setting is for aws hosts (shards, retries, scheduler timing), except "
                         f"{' and '.join(LOCAL_SETTINGS)}", "drop it, or use --type aws")
    out: dict[str, Any] = {}
    for key, raw in settings.items():
        kind = AWS_SETTINGS.get(key)
        if kind is None:
            raise UsageError(f"unknown host setting {key!r}", f"known settings: {', '.join(AWS_SETTINGS)}")
        try:
            if kind == "text":  # kms_key: a key id, ARN or alias, checked with KMS before the tables are made
                out[key] = str(raw).strip()
                ok = bool(out[key])
            elif kind == "list":  # admins (ARN patterns / user names), env_deny (name patterns): comma-separated
                out[key] = [x.strip() for x in str(raw).split(",") if x.strip()]
                ok = True
            elif kind == "int":
                out[key] = int(raw)
                ok = out[key] >= 1
            elif kind == "float":
                out[key] = float(raw)
                ok = out[key] >= 0
            else:
                out[key] = str(raw)
                ok = out[key] in ("standard", "adaptive", "legacy")
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(f"host setting {key}={raw!r} is not valid",
                             {"int": "give a whole number, 1 or more", "float": "give a number of seconds",
                              "mode": "give standard or adaptive", "text": "give a value"}[kind])
    return out


def create_host(name: str, type_: str = "local", *, main_region: str | None = None, profile: str | None = None,
                table_prefix: str | None = None, endpoint_url: str | None = None, select: bool = True,
                settings: dict | None = None) -> Host:
    """Create a host; on aws its tables too (idempotent: re-running a half-finished create resumes it)."""
    check_host_name(name)
    if type_ not in HOST_TYPES:
        raise UsageError(f"host type {type_!r} is not one of {', '.join(HOST_TYPES)}", "use --type local or --type aws")
    settings = check_settings(type_, dict(settings or {}))
    hosts, selected = load_hosts()
    if name in hosts:
        raise HyperError(f"host {name!r} already exists",
                         f"pick another name, or select it with `hyper hosts select-host {name}`")
    if type_ == "local":
        if main_region or profile or table_prefix is not None or endpoint_url:
            raise UsageError("--main-region, --profile, --table-prefix and --endpoint-url are for aws hosts",
                             "drop them, or use --type aws")
        host = Host(name=name, type="local", extra=dict(settings or {}))
        from hyper.services.context import open_store

        open_store(host).close()  # the database and the default queue and definition exist from the start
    else:
        region = _check_aws_fields(main_region, table_prefix, endpoint_url)
        host = Host(name=name, type="aws", main_region=region, profile=profile, table_prefix=table_prefix,
                    endpoint_url=endpoint_url, extra=dict(settings or {}))
        from hyper.aws.tables import ensure_tables

        _check_prefix_apart_from_hosts(host, hosts)
        _check_prefix_is_own(host)  # (settings were checked above, before anything is created)
        from hyper.aws.tables import owner

        found = owner(host)
        if found is not None and found != name:  # our own half-finished create is resumed, nobody else's
            raise HyperError(f"tables {tables_prefix(host)}jobs and {tables_prefix(host)}meta already exist"
                             + (f" (host {found!r})" if found else ""),
                             "adopt them with `hyper hosts import-deployment --table-prefix "
                             f"{tables_prefix(host)} --main-region {main_region}`, or choose another --table-prefix")
        ensure_tables(host, wait=True)
        _record_main_region(host, region)
    hosts[name] = host
    save_hosts(hosts, name if select else selected)
    return host


def prefixes_nest(a: str, b: str) -> bool:
    """One prefix starts the other: IAM patterns `<a>*` would reach `<b>`'s roles, stacks and repositories."""
    return a.startswith(b) or b.startswith(a)


def _check_prefix_apart_from_hosts(host: Host, hosts: dict[str, Host]) -> None:
    """Refuse a prefix that nests with another configured aws host's, in any region: IAM roles and policies
    are account-wide, so the main-region table check alone would miss a host whose tables live elsewhere."""
    mine = tables_prefix(host)
    for other in hosts.values():
        theirs = tables_prefix(other) if other.type == "aws" and other.name != host.name else None
        if theirs == mine and other.main_region == host.main_region:
            continue  # the same tables: the caller's check says they exist and how to adopt them
        if theirs is not None and prefixes_nest(mine, theirs):
            raise HyperError(f"table prefix {mine!r} overlaps host {other.name!r}'s {tables_prefix(other)!r} "
                             "(access grants on one would reach the other)",
                             "choose a --table-prefix neither starts nor is started by another host's")


def _check_prefix_is_own(host: Host) -> None:
    """Refuse a prefix that nests with another deployment's: IAM grants on `<prefix>*` would then reach it.

    `hyper-prod-` starts `hyper-prod-x-`, so host prod's policies would cover host prod-x's tables. Every
    hyper deployment has a `<prefix>meta` table; compare against all of them in the main region.
    """
    from hyper.aws.session import aws_errors, client
    from hyper.aws.tables import table_names

    mine = tables_prefix(host)
    own = set(table_names(host).values())
    with aws_errors(host, "dynamodb", "list_tables"):
        db = client(host, "dynamodb")
        for page in db.get_paginator("list_tables").paginate():
            for name in page.get("TableNames", []):
                if name in own:
                    continue
                other = name[:-len("meta")] if name.endswith("meta") else None
                if name.startswith(mine) or (other and prefixes_nest(mine, other)):
                    raise HyperError(f"table prefix {mine!r} overlaps the existing table {name} of another "
                                     "deployment (access grants on one would reach the other)",
                                     "choose a distinct --table-prefix, or adopt it with "
                                     "`hyper hosts import-deployment`")


def _undeploy(host: Host) -> list[str]:
    """Remove what the host deployed (job definitions, ECR repositories, cluster, network and main stacks),
    dependents first.

    Runs before the tables go: they are the only record of what exists. A step that fails stops the purge
    with the reason, and the tables stay so it can be run again.
    """
    from hyper.aws import names, stacks
    from hyper.aws.session import main_region
    from hyper.services import provision
    from hyper.services.context import Context
    from hyper.config import Settings

    ctx = Context(host, Settings.from_env())
    store = ctx.store
    done: list[str] = []
    for kind in ("definition", "image", "cluster", "region"):
        for resource in store.list_resources(kind):
            steps = provision.plan(ctx, resource, delete=True)
            if resource.status == "PENDING" or not steps:
                continue  # recorded, never deployed; or nothing of its own in AWS (a queue, an adopted image)
            status, message = provision.deploy(ctx, resource, steps)
            if status == "FAILED":
                raise HyperError(f"purge of host {host.name!r} stopped: {message}",
                                 "fix the cause and run the purge again (the tables are kept until then)")
            done.append(f"{kind} {resource.name}")
    main = names.stack(host, "main")
    result = stacks.delete_stack(host, main_region(host), main)
    if result.failed:
        raise HyperError(f"purge of host {host.name!r} stopped: {result.message}",
                         "fix the cause and run the purge again (the tables are kept until then)")
    if result.action == "delete":
        done.append(f"stack {main}")
    return done


def _record_main_region(host: Host, region: str) -> None:
    """The host's main region is a region resource from the start (its tables live there)."""
    from hyper.models import Region
    from hyper.services.context import open_store

    store = open_store(host)
    if store.get_resource("region", region) is None:
        store.put_resource(Region(name=region, main=True, status="PENDING",
                                  message="holds the host's tables; deploy its network with `hyper regions "
                                  f"init-main-region {region} --vpc-cidr CIDR`"), replace=True)


def import_deployment(table_prefix: str, main_region: str, *, name: str | None = None,
                      profile: str | None = None, endpoint_url: str | None = None, select: bool = True) -> Host:
    """Adopt an aws host someone else created, found by its table prefix (nothing is created)."""
    _check_aws_fields(main_region, table_prefix, endpoint_url)
    if name is None:
        stem = table_prefix[len("hyper-"):] if table_prefix.startswith("hyper-") else table_prefix
        name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or "imported"
    check_host_name(name)
    hosts, selected = load_hosts()
    if name in hosts:
        raise HyperError(f"host {name!r} already exists", "give the imported host another name with --name")
    host = Host(name=name, type="aws", main_region=main_region, profile=profile, table_prefix=table_prefix,
                endpoint_url=endpoint_url)
    from hyper.aws.tables import table_names, tables_exist

    if not tables_exist(host):
        names = ", ".join(table_names(host).values())
        raise HyperError(f"no hyper deployment with table prefix {table_prefix!r} in {main_region} "
                         f"(looked for {names})", "check --table-prefix, --main-region and --profile")
    hosts[name] = host
    save_hosts(hosts, name if select else selected)
    return host


def list_hosts() -> list[HostRow]:
    hosts, selected = load_hosts()
    return [HostRow(h, h.name == selected) for h in sorted(hosts.values(), key=lambda h: (h.name != DEFAULT_HOST,
                                                                                             h.name))]


def select_host(name: str) -> Host:
    hosts, _ = load_hosts()
    if name not in hosts:
        raise HyperError(f"unknown host {name!r}", f"known hosts: {', '.join(sorted(hosts))}")
    save_hosts(hosts, name)
    return hosts[name]


def get_host(name: str) -> Host:
    hosts, _ = load_hosts()
    if name not in hosts:
        raise HyperError(f"unknown host {name!r}", f"known hosts: {', '.join(sorted(hosts))}")
    return hosts[name]


def delete_host(name: str, *, purge: bool = False) -> list[str]:
    """Forget a host; with ``purge`` also delete its data (aws: its tables). Returns what was purged."""
    hosts, selected = load_hosts()
    if name not in hosts:
        raise HyperError(f"unknown host {name!r}", f"known hosts: {', '.join(sorted(hosts))}")
    host = hosts[name]
    if name == DEFAULT_HOST and not purge:
        raise HyperError("the local host is built in and cannot be forgotten",
                         "add --purge to erase its jobs and resources")
    purged: list[str] = []
    if purge:
        if host.type == "aws":
            from hyper.aws.tables import delete_tables

            purged = _undeploy(host)
            purged += [f"table {t}" for t in delete_tables(host)]
        else:
            from hyper.backends.local import agent_excluded

            with agent_excluded(host) as free:
                if not free:
                    raise HyperError(f"the agent of host {name!r} is running",
                                     "wait for it to go idle (`hyper agent status`), or qdel its jobs first")
                if host.data_dir.exists():
                    shutil.rmtree(host.data_dir)
                    purged = [f"directory {host.data_dir}"]
    if name != DEFAULT_HOST:
        del hosts[name]
    save_hosts(hosts, DEFAULT_HOST if selected == name else selected)
    return purged
