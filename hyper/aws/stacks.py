"""Deploy, update, delete and inspect hyper's CloudFormation stacks; register job definitions.

Templates come from ``hyper.aws.templates`` (pure); this module only sends them. A stack's state is shown the
way hyper shows every resource (``StackResult.resource_status``: CREATING / UPDATING / ACTIVE / FAILED /
DELETING / MISSING), with the reasons of the failure events when it failed and the way out:

* ``ROLLBACK_COMPLETE`` / ``ROLLBACK_FAILED``: the first creation failed and nothing of it is left; such a stack
  can only be deleted, so ``deploy_stack`` deletes it and creates it again (a fix of the input is enough).
* ``UPDATE_ROLLBACK_COMPLETE``: an update failed; the previous version still runs. Fix and deploy again.
* ``*_FAILED`` otherwise (``DELETE_FAILED``, ``UPDATE_ROLLBACK_FAILED``...): a resource blocks; the reasons say
  which. Remove the blocker (or continue the rollback) and delete / re-create.

Job definitions: one registration per content hash (``hyper.aws.templates.content_hash``, kept in the
``hyper:content-hash`` tag); registering identical content again returns the existing ``name:revision``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Iterable

from hyper.aws import names, templates
from hyper.aws.session import AwsClient, aws_errors, error_code
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition

CAPABILITIES = ["CAPABILITY_NAMED_IAM"]  # the region stack names its roles (<prefix><region>-<role>)
STABLE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
NEVER_CREATED = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"}
DEFAULT_TIMEOUT = 3600.0  # a new VPC with a NAT gateway takes a few minutes; GPU environments longer

# clients in any region ---------------------------------------------------------------------------------------
def regional_client(host: Host, service: str, region: str | None = None) -> AwsClient:
    """A client for ``service`` in ``region`` (default: the main region), with the host's retry settings."""
    from hyper.aws.session import client

    return client(host, service, region=region)


def _at(host: Host, region: str | None) -> Host:
    """The host as seen from ``region``: errors then name the region the request went to."""
    import dataclasses

    return dataclasses.replace(host, main_region=region) if region else host


# results -----------------------------------------------------------------------------------------------------
@dataclass
class StackResult:
    """What a stack is (or became): CloudFormation's status, why it failed, what it exports."""

    name: str
    region: str
    status: str  # CloudFormation's StackStatus, or MISSING
    reasons: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    action: str = "none"  # create | update | recreate | delete | none: what this call did

    @property
    def exists(self) -> bool:
        return self.status not in ("MISSING", "DELETE_COMPLETE")

    @property
    def in_progress(self) -> bool:
        return self.status.endswith("_IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return (self.status.endswith("_FAILED") or self.status in ("ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")
                or self.status == "ROLLBACK_IN_PROGRESS" or self.status.startswith("UPDATE_ROLLBACK_IN_PROGRESS"))

    @property
    def resource_status(self) -> str:
        """The status hyper's resources show (list-*): CREATING, UPDATING, DELETING, ACTIVE, FAILED, MISSING."""
        s = self.status
        if s in ("MISSING", "DELETE_COMPLETE"):
            return "MISSING"
        if self.failed:
            return "FAILED"
        if s in STABLE_OK:
            return "ACTIVE"
        if s.startswith("DELETE"):
            return "DELETING"
        if s.startswith("CREATE") or s.startswith("IMPORT"):
            return "CREATING"
        return "UPDATING"

    @property
    def hint(self) -> str:
        s, where = self.status, f"--region {self.region}"
        if s in NEVER_CREATED:
            return "nothing of it was created: fix the cause and deploy again (hyper deletes and re-creates it)"
        if s == "UPDATE_ROLLBACK_COMPLETE":
            return "the previous version still runs: fix the cause and update again"
        if s == "UPDATE_ROLLBACK_FAILED":
            return (f"fix the cause, then `aws cloudformation continue-update-rollback --stack-name {self.name} "
                    f"{where}`, or delete it and add it again")
        if s == "DELETE_FAILED":
            return "remove what blocks the deletion (see the reasons) and delete again"
        if self.in_progress:
            return "wait for it to finish"
        return ""

    @property
    def message(self) -> str:
        """One line for a resource's ``message`` column: the reasons and the way out."""
        if not self.failed:
            return ""
        reasons = "; ".join(self.reasons) or "no failure event recorded"
        return f"{self.status}: {reasons} ({self.hint})" if self.hint else f"{self.status}: {reasons}"

    def raise_for_status(self) -> "StackResult":
        if self.failed:
            raise HyperError(f"stack {self.name} in {self.region} is {self.status}: "
                             f"{'; '.join(self.reasons) or 'no failure event recorded'}", self.hint)
        return self

    def to_dict(self) -> dict:
        return {"name": self.name, "region": self.region, "status": self.status,
                "resource_status": self.resource_status, "reasons": list(self.reasons),
                "outputs": dict(self.outputs), "action": self.action}


def failure_reasons(events: Iterable[dict], stack_name: str) -> list[str]:
    """The reasons of the failed resources of a stack's latest operation (pure; events newest first).

    Reads back to the stack's own "User Initiated" start event. Resource failures are the reasons; the
    stack's summary ("The following resource(s) failed to create: ...") only when no resource said more.
    Cancellations caused by the first failure ("Resource creation cancelled") are left out.
    """
    resources: list[str] = []
    summary: list[str] = []
    for event in events:
        status = str(event.get("ResourceStatus") or "")
        reason = " ".join(str(event.get("ResourceStatusReason") or "").split())
        is_stack = (event.get("ResourceType") == "AWS::CloudFormation::Stack"
                    and event.get("LogicalResourceId") == stack_name)
        if is_stack:
            if status in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS") \
                    and reason.lower().startswith("user initiated"):
                break
            if reason and (status.endswith("FAILED") or "ROLLBACK" in status):
                summary.append(reason)
            continue
        if not status.endswith("FAILED") or not reason or re.search(r"\b(creation|update|deletion) cancelled", reason):
            continue
        resources.append(f"{event.get('LogicalResourceId', '')} ({event.get('ResourceType', '')}): {reason}")
    out: list[str] = []
    for line in reversed(resources or summary):
        if line not in out:
            out.append(line)
    return out


# reading a stack -----------------------------------------------------------------------------------------------
def _describe(cfn: AwsClient, name: str) -> dict | None:
    try:
        stacks = cfn.describe_stacks(StackName=name).get("Stacks") or []
    except cfn.exceptions.ClientError as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def _events(cfn: AwsClient, stack_id: str, limit: int = 200) -> list[dict]:
    events: list[dict] = []
    token = None
    while len(events) < limit:
        kwargs = {"StackName": stack_id, **({"NextToken": token} if token else {})}
        page = cfn.describe_stack_events(**kwargs)
        events += page.get("StackEvents") or []
        token = page.get("NextToken")
        if not token:
            break
    return events


def _result(cfn: AwsClient, name: str, region: str, stack: dict | None, action: str = "none") -> StackResult:
    if stack is None:
        return StackResult(name, region, "MISSING", action=action)
    result = StackResult(name, region, stack["StackStatus"], action=action,
                         outputs={o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []})
    if result.failed:
        result.reasons = failure_reasons(_events(cfn, stack["StackId"]), name)
        if not result.reasons and stack.get("StackStatusReason"):
            result.reasons = [" ".join(stack["StackStatusReason"].split())]
    return result


def stack_status(host: Host, region: str, stack_name: str) -> StackResult:
    """A stack's status, outputs and, when it failed, its failure events' reasons (MISSING if absent)."""
    with aws_errors(_at(host, region), "cloudformation", f"describe stack {stack_name}"):
        cfn = regional_client(host, "cloudformation", region)
        return _result(cfn, stack_name, region, _describe(cfn, stack_name))


def stack_outputs(host: Host, region: str, stack_name: str, what: str = "") -> dict[str, str]:
    """The outputs of a healthy stack; a HyperError saying what to run when it is missing or failed."""
    result = stack_status(host, region, stack_name)
    if not result.exists:
        raise HyperError(f"stack {stack_name} does not exist in {region}",
                         f"create it first{f' ({what})' if what else ''}")
    result.raise_for_status()
    if result.in_progress and not result.outputs:
        raise HyperError(f"stack {stack_name} in {region} is {result.status}", "wait for it to finish")
    return result.outputs


def stack_action(host: Host, region: str, stack_name: str) -> str:
    """What ``deploy_stack`` would do now (for --dry-run): create, update, recreate or blocked (STATUS)."""
    status = stack_status(host, region, stack_name).status
    if status in ("MISSING", "DELETE_COMPLETE"):
        return "create"
    if status in NEVER_CREATED:
        return "recreate"
    if status in ("DELETE_FAILED", "UPDATE_ROLLBACK_FAILED") or status.endswith("_IN_PROGRESS"):
        return f"blocked ({status})"
    return "update"


def _wait(cfn: AwsClient, name: str, stack_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        stack = _describe(cfn, stack_id)
        if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            raise HyperError(f"stack {name} is still {stack['StackStatus']} after {timeout:g} s",
                             "it goes on in the background: look again with list-* later")
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


# changing a stack ----------------------------------------------------------------------------------------------
def _parameters(parameters: dict[str, str] | None) -> list[dict]:
    return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()]


def deploy_stack(host: Host, region: str, stack_name: str, template: dict, *,
                 parameters: dict[str, str] | None = None, wait: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> StackResult:
    """Create the stack, or update it in place; returns what it became (a failed deployment is returned,
    not raised: check ``.failed`` / ``.message``, or call ``.raise_for_status()``).

    A stack whose creation failed (ROLLBACK_COMPLETE) holds nothing and cannot be updated: it is deleted
    and created again. A stack busy with another operation, or stuck in a failed update or deletion, is a
    HyperError with the reasons and the way out. Every stack is tagged ``hyper:prefix`` and ``hyper:host``,
    which CloudFormation copies to the resources that take tags.
    """
    body = templates.template_body(template)
    tags = templates.stack_tags(host)
    with aws_errors(_at(host, region), "cloudformation", f"deploy stack {stack_name}"):
        cfn = regional_client(host, "cloudformation", region)
        current = _describe(cfn, stack_name)
        action = "create"
        if current is not None:
            state = _result(cfn, stack_name, region, current)
            if state.in_progress:
                raise HyperError(f"stack {stack_name} in {region} is busy ({state.status})",
                                 "wait for it to finish, then run the command again")
            if state.status in NEVER_CREATED:
                cfn.delete_stack(StackName=current["StackId"])
                _wait(cfn, stack_name, current["StackId"], timeout)
                action = "recreate"
            elif state.status in ("DELETE_FAILED", "UPDATE_ROLLBACK_FAILED"):
                raise HyperError(f"stack {stack_name} in {region} is {state.status}: "
                                 f"{'; '.join(state.reasons) or 'no failure event recorded'}", state.hint)
            else:
                action = "update"
        if action == "update":
            try:
                response = cfn.update_stack(StackName=stack_name, TemplateBody=body, Capabilities=CAPABILITIES,
                                            Parameters=_parameters(parameters), Tags=tags)
            except cfn.exceptions.ClientError as exc:
                if error_code(exc) == "ValidationError" and "No updates are to be performed" in str(exc):
                    return _result(cfn, stack_name, region, _describe(cfn, stack_name), "none")
                raise
        else:
            response = cfn.create_stack(StackName=stack_name, TemplateBody=body, Capabilities=CAPABILITIES,
                                        Parameters=_parameters(parameters), Tags=tags, OnFailure="ROLLBACK")
        stack_id = response["StackId"]
        stack = _wait(cfn, stack_name, stack_id, timeout) if wait else _describe(cfn, stack_id)
        return _result(cfn, stack_name, region, stack, action)


def stack_importers(host: Host, region: str, stack_name: str) -> dict[str, list[str]]:
    """Stacks importing this stack's exports: {export name: [importing stacks]}.

    ListImports is the authority; where it is not implemented (moto answers HTTP 500) the host's own stacks'
    templates are searched for the export names instead.
    """
    import botocore.exceptions as bx
    from botocore.parsers import ResponseParserError

    with aws_errors(_at(host, region), "cloudformation", f"list imports of {stack_name}"):
        cfn = regional_client(host, "cloudformation", region)
        stack = _describe(cfn, stack_name)
        exports = [o["ExportName"] for o in (stack or {}).get("Outputs") or [] if o.get("ExportName")]
        users: dict[str, list[str]] = {}
        for export in exports:
            try:
                found = cfn.list_imports(ExportName=export).get("Imports") or []
            except ResponseParserError:
                return _importers_by_template(host, cfn, stack_name, exports)
            except bx.ClientError as exc:
                if error_code(exc) in ("InternalFailure", "NotImplemented"):
                    return _importers_by_template(host, cfn, stack_name, exports)
                if "is not imported" in str(exc):
                    continue
                raise
            if found:
                users[export] = sorted(found)
        return users


def _importers_by_template(host: Host, cfn: AwsClient, stack_name: str, exports: list[str]) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    paginator = cfn.get_paginator("list_stacks")
    for page in paginator.paginate():
        for summary in page.get("StackSummaries") or []:
            other = summary["StackName"]
            if (other == stack_name or summary["StackStatus"] == "DELETE_COMPLETE"
                    or not other.startswith(names.prefix(host))):
                continue
            body = cfn.get_template(StackName=summary["StackId"]).get("TemplateBody")
            text = body if isinstance(body, str) else json.dumps(body)
            for export in exports:
                if re.search(rf"(?<![A-Za-z0-9:-]){re.escape(export)}(?![A-Za-z0-9:-])", text):
                    users.setdefault(export, []).append(other)
    return {k: sorted(set(v)) for k, v in users.items()}


def delete_stack(host: Host, region: str, stack_name: str, *, wait: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> StackResult:
    """Delete a stack (a missing one is fine); refuses while another stack imports its exports."""
    users = stack_importers(host, region, stack_name)
    if users:
        stacks = sorted({s for found in users.values() for s in found})
        raise HyperError(f"stack {stack_name} in {region} is still used by {', '.join(stacks)}",
                         "delete those first (e.g. the clusters in this region)")
    with aws_errors(_at(host, region), "cloudformation", f"delete stack {stack_name}"):
        cfn = regional_client(host, "cloudformation", region)
        current = _describe(cfn, stack_name)
        if current is None:
            return StackResult(stack_name, region, "MISSING", action="none")
        cfn.delete_stack(StackName=current["StackId"])
        stack = _wait(cfn, stack_name, current["StackId"], timeout) if wait else _describe(cfn, current["StackId"])
        if stack is not None and stack["StackStatus"] == "DELETE_COMPLETE":
            stack = None
        return _result(cfn, stack_name, region, stack, "delete")


# checks against the region -------------------------------------------------------------------------------------
def missing_instance_types(host: Host, region: str, instance_types: Iterable[str]) -> list[str]:
    """The exact instance types (family.size) EC2 does not offer in ``region`` (families are not checked)."""
    exact = sorted({t for t in instance_types if "." in t})
    if not exact:
        return []
    with aws_errors(_at(host, region), "ec2", "describe instance type offerings"):
        ec2 = regional_client(host, "ec2", region)
        offered: set[str] = set()
        for start in range(0, len(exact), 100):
            paginator = ec2.get_paginator("describe_instance_type_offerings")
            for page in paginator.paginate(LocationType="region", Filters=[
                    {"Name": "instance-type", "Values": exact[start:start + 100]}]):
                offered.update(o["InstanceType"] for o in page.get("InstanceTypeOfferings") or [])
    return [t for t in exact if t not in offered]


def check_cluster_region(host: Host, cluster: Cluster, region: str) -> None:
    """Before deploying a cluster stack: its instance types exist in that region (a HyperError if not)."""
    settings = templates.cluster_settings(cluster, region)
    missing = missing_instance_types(host, region, settings["instance_types"])
    if missing:
        raise HyperError(f"cluster {cluster.name!r}: {', '.join(missing)} not offered in {region}",
                         f"drop them for {region} with a per-region override (overrides: {{{region}: "
                         "{instance-types: [...]}}) or pick other types")


def ensure_batch_service_linked_role(host: Host) -> None:
    """Batch's service-linked role (AWSServiceRoleForBatch), which every compute environment names, exists.

    It is one role per account, made by AWS the first time anyone creates an environment without a role; the
    templates name it, so it has to exist first. Already there is the usual case (IAM answers InvalidInput
    "has been taken"; moto EntityAlreadyExists), and fine.
    """
    with aws_errors(host, "iam", "create the AWS Batch service-linked role"):
        iam = regional_client(host, "iam")
        try:
            iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")
        except iam.exceptions.ClientError as exc:
            if error_code(exc) not in ("InvalidInput", "EntityAlreadyExists"):
                raise


# job definitions -------------------------------------------------------------------------------------------------
def network_roles(host: Host, region: str) -> tuple[str, str]:
    """(job role ARN, execution role ARN) from the region's network stack."""
    stack = names.stack(host, "network")
    outputs = stack_outputs(host, region, stack, f"hyper regions add-region {region}")
    try:
        return outputs["JobRoleArn"], outputs["ExecutionRoleArn"]
    except KeyError:
        raise HyperError(f"stack {stack} in {region} has no role outputs", "update the region "
                         f"(`hyper regions update-region {region}`)") from None


def _revisions(batch: AwsClient, name: str) -> list[dict]:
    found: list[dict] = []
    token = None
    while True:
        page = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE",
                                              **({"nextToken": token} if token else {}))
        found += page.get("jobDefinitions") or []
        token = page.get("nextToken")
        if not token:
            return found


def register_job_definition(host: Host, region: str, definition: Definition, image_uri: str, *,
                            cluster: Cluster | None = None, roles: tuple[str, str] | None = None,
                            prune: bool = True) -> str:
    """Register a definition's worker in ``region`` unless that content is already its latest; name:revision.

    The scheduler submits the latest ACTIVE revision (``hyper.aws.batch``), so "already there" means the latest
    ACTIVE revision carries the same content hash; anything else is registered as a new revision, and with
    ``prune`` the older ACTIVE revisions are deregistered (jobs already submitted with them run on), so the
    latest is the only one. ``roles`` (job role ARN, execution role ARN) default to the region's network stack.
    """
    job_role, execution_role = roles or network_roles(host, region)
    request = templates.render_job_definition(host, definition, image_uri, job_role_arn=job_role,
                                              execution_role_arn=execution_role, cluster=cluster)
    digest = request["tags"][templates.CONTENT_HASH_TAG]
    name = request["jobDefinitionName"]
    with aws_errors(_at(host, region), "batch", f"register job definition {name}"):
        batch = regional_client(host, "batch", region)
        active = sorted(_revisions(batch, name), key=lambda r: int(r.get("revision", 0)))
        if active and (active[-1].get("tags") or {}).get(templates.CONTENT_HASH_TAG) == digest:
            current = f"{name}:{active[-1]['revision']}"
            older = active[:-1]
        else:
            response = batch.register_job_definition(**request)
            current = f"{response['jobDefinitionName']}:{response['revision']}"
            older = active
        if prune:
            for revision in older:
                batch.deregister_job_definition(jobDefinition=revision["jobDefinitionArn"])
        return current


def deregister_job_definitions(host: Host, region: str, definition: str, *, keep: str | None = None) -> list[str]:
    """Deregister a definition's active revisions in ``region`` (except ``keep``, a name:revision)."""
    name = names.job_definition(host, definition)
    gone = []
    with aws_errors(_at(host, region), "batch", f"deregister job definition {name}"):
        batch = regional_client(host, "batch", region)
        for revision in _revisions(batch, name):
            ref = f"{name}:{revision['revision']}"
            if ref != keep:
                batch.deregister_job_definition(jobDefinition=revision["jobDefinitionArn"])
                gone.append(ref)
    return gone


def describe(result: StackResult) -> str:
    """One line for people: `<stack> in <region>: <status> [reasons]`."""
    line = f"{result.name} in {result.region}: {result.status}"
    return f"{line}: {'; '.join(result.reasons)}" if result.reasons else line
