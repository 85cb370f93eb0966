"""`hyper queues refresh-weights [QUEUE...]`: recompute auto region weights from spot scores and prices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hyper.cli.common import cli_errors, render
from hyper.cli.options import OutputOption

if TYPE_CHECKING:
    from hyper.services.weights import Result

PROG = "hyper queues"
COLUMNS = [("queue", "Queue"), ("cluster", "Cluster"), ("weights", "Weights"), ("source", "Source"),
           ("note", "Note")]


def table_row(result: Result) -> dict:
    weights = ",".join(f"{r}={w}" for r, w in result.weights.items()) if result.weights else "equal"
    return {"queue": result.queue, "cluster": result.cluster, "weights": weights, "source": result.source,
            "note": result.note}


def add_refresh_command(app: typer.Typer) -> None:
    """Add `refresh-weights` to the `hyper queues` app."""

    @app.command("refresh-weights")
    @cli_errors(PROG)
    def refresh_weights(
        queues: Annotated[Optional[list[str]], typer.Argument(
            metavar="QUEUE...", help="Queues to refresh (default: every queue with weights auto).",
            show_default=False)] = None,
        output: OutputOption = "table",
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and print the weights; store nothing.")
                           ] = False,
    ) -> None:
        """Recompute the region weights of queues with weights auto (EC2 spot placement scores and spot prices).

        When an AWS API is unavailable the queue keeps its last weights and the note says why (exit 0).
        """
        from hyper.cli.common import open_cli_context
        from hyper.cli.common import check_format
        from hyper.services import weights

        fmt = check_format(output)
        results = weights.refresh(open_cli_context(), queues or None, dry_run=dry_run)
        if not results and fmt == "table":
            typer.echo("no queue has weights auto (set them with `hyper queues update-queue NAME --weights auto`)")
            return
        render([table_row(r) for r in results], COLUMNS, fmt, full_rows=[r.to_dict() for r in results])
        if dry_run and fmt == "table":
            typer.echo("dry run: nothing stored", err=True)
