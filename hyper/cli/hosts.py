"""`hyper hosts ...`: create, list, select, delete and import control planes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors, render
from hyper.cli.options import OutputOption

app = typer.Typer(no_args_is_help=True, help="Manage hosts (control planes: where jobs and resources live).")
PROG = "hyper hosts"
COLUMNS = [("selected", ""), ("name", "Host"), ("type", "Type"), ("main_region", "Main region"),
           ("profile", "Profile"), ("endpoint_url", "Endpoint"), ("state", "State")]


def _settings(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            from hyper.errors import UsageError

            raise UsageError(f"--setting {pair!r} is not KEY=VALUE", "e.g. --setting index_shards=32")
        out[key.strip()] = value.strip()
    return out


@app.command("create-host")
@cli_errors(PROG)
def create_host(
    name: Annotated[str, typer.Argument(help="The host's name, e.g. prod.")],
    type_: Annotated[str, typer.Option("--type", "-t", help="local (embedded SQLite) or aws (DynamoDB).")] = "local",
    main_region: Annotated[Optional[str], typer.Option("--main-region", help="aws: region of the tables.")] = None,
    profile: Annotated[Optional[str], typer.Option("--profile", help="aws: named profile (else the default "
                                                   "credential chain).")] = None,
    table_prefix: Annotated[Optional[str], typer.Option("--table-prefix", help="aws: table name prefix "
                                                        "(default hyper-NAME-).")] = None,
    endpoint_url: Annotated[Optional[str], typer.Option("--endpoint-url", help="aws: an AWS-compatible endpoint "
                                                        "(e.g. a local emulator).")] = None,
    setting: Annotated[Optional[list[str]], typer.Option("--setting", help="Host setting KEY=VALUE, e.g. "
                                                         "index_shards=32, retry_mode=adaptive.")] = None,
    select: Annotated[bool, typer.Option("--select/--no-select", help="Make it the selected host.")] = True,
) -> None:
    """Create a host; on aws, its DynamoDB tables (on-demand, TTL) too, waiting until they are ACTIVE."""
    from hyper.services import hosts

    host = hosts.create_host(name, type_, main_region=main_region, profile=profile, table_prefix=table_prefix,
                             endpoint_url=endpoint_url, select=select, settings=_settings(setting))
    where = str(host.data_dir) if host.type == "local" else \
        f"tables {hosts.tables_prefix(host)}jobs and {hosts.tables_prefix(host)}meta in {host.main_region}"
    typer.echo(f"created {host.type} host {host.name} ({where})" + ("; selected" if select else ""))


@app.command("import-deployment")
@cli_errors(PROG)
def import_deployment(
    table_prefix: Annotated[str, typer.Option("--table-prefix", help="The deployment's table prefix.")],
    main_region: Annotated[str, typer.Option("--main-region", help="Region of its tables.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Name here (default: from the prefix).")] = None,
    profile: Annotated[Optional[str], typer.Option("--profile", help="Named AWS profile.")] = None,
    endpoint_url: Annotated[Optional[str], typer.Option("--endpoint-url", help="AWS-compatible endpoint.")] = None,
    select: Annotated[bool, typer.Option("--select/--no-select", help="Make it the selected host.")] = True,
) -> None:
    """Adopt an existing aws host (created elsewhere) by its table prefix; creates nothing."""
    from hyper.services import hosts

    host = hosts.import_deployment(table_prefix, main_region, name=name, profile=profile,
                                   endpoint_url=endpoint_url, select=select)
    typer.echo(f"imported aws host {host.name} (tables {table_prefix}* in {main_region})"
               + ("; selected" if select else ""))


@app.command("list-hosts")
@cli_errors(PROG)
def list_hosts(output: OutputOption = "table") -> None:
    """List hosts; * marks the selected one (HYPER_HOST and --host override it per command)."""
    from hyper.services import hosts

    rows = [r.to_row() for r in hosts.list_hosts()]
    render(rows, COLUMNS, output)


@app.command("select-host")
@cli_errors(PROG)
def select_host(name: Annotated[str, typer.Argument(help="The host to use from now on.")]) -> None:
    """Select the host commands use when neither --host nor HYPER_HOST says otherwise."""
    from hyper.services import hosts

    host = hosts.select_host(name)
    typer.echo(f"selected host {host.name}")


@app.command("delete-host")
@cli_errors(PROG)
def delete_host(
    name: Annotated[str, typer.Argument(help="The host to delete.")],
    purge: Annotated[bool, typer.Option("--purge", help="Also delete its data: aws tables (every job and "
                                        "resource) or the local database.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
) -> None:
    """Forget a host (asks to confirm); --purge also deletes its tables or database."""
    from hyper.errors import HyperError
    from hyper.services import hosts

    host = hosts.get_host(name)
    if not yes:
        import sys

        if not sys.stdin.isatty():  # no one to ask (a script): never delete unasked
            raise HyperError("nothing deleted: confirmation needs a terminal", "pass --yes in scripts")
        what = "and DELETE ALL ITS JOBS AND RESOURCES" if purge else "(its data stays)"
        try:
            confirmed = typer.confirm(f"forget host {host.name} {what}?", default=False)
        except typer.Abort:  # no terminal to answer on (a script): never delete unasked
            confirmed = False
        if not confirmed:
            raise HyperError("nothing deleted", "answer y to confirm, or pass --yes")
    purged = hosts.delete_host(name, purge=purge)
    typer.echo(f"deleted host {name}" + (f"; removed {', '.join(purged)}" if purged else ""))
