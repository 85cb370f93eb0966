"""`hyper iam ...`: the least-privilege IAM policies people and workers of a host need."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors

app = typer.Typer(no_args_is_help=True, help="IAM policies for a host's admins, users, scheduler and workers.")
PROG = "hyper iam"


@app.command("policy")
@cli_errors(PROG)
def policy(
    role: Annotated[str, typer.Option("--role", "-r", help="admin (create-host, add-*/update-*/delete-*, the "
                                      "scheduler), scheduler, user (qsub/qstat/qdel/qlog), worker, or the "
                                      "permissions boundaries boundary / eks-boundary (an account "
                                      "administrator creates them once as <prefix>boundary, "
                                      "<prefix>eks-boundary).")],
    account_id: Annotated[Optional[str], typer.Option("--account-id", help="12-digit account of the host's "
                                                      "resources (default: * in the ARNs).")] = None,
) -> None:
    """Print the IAM policy document (JSON) a role needs on the selected host, scoped to its names."""
    import json

    from hyper.aws.iam import MANAGED_POLICY_LIMIT, render_policy
    from hyper.cli.common import open_cli_context

    document = render_policy(open_cli_context().host, role.lower(), account=account_id or "*")
    typer.echo(json.dumps(document, indent=2))
    size = len(json.dumps(document, separators=(",", ":")))
    if size > MANAGED_POLICY_LIMIT:
        typer.echo(f"{PROG}: note: {size} characters, over the {MANAGED_POLICY_LIMIT} of a managed policy; "
                   "attach it inline to a role (10,240) or split its statements", err=True)
