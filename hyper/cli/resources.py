"""`hyper regions|clusters|queues|images|definitions ...`: commands generated from the field table.

Every field in ``hyper.services.resources.FIELDS`` becomes an option (``--max-vcpus``, ``--weights``...), so
the command line, the guided prompt and YAML ``apply`` can never disagree about names or units. Options
arrive as text and are parsed by the service, which owns every rule.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from hyper.cli.common import cli_errors, render
from hyper.cli.options import OutputOption
from hyper.models import Image, Queue, Region, Resource
from hyper.services import resources as res

if TYPE_CHECKING:
    from hyper.services.context import Context
    from hyper.services.provision import Step

# list-* columns per kind: (mapping key, header)
LIST_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "region": [("name", "Region"), ("main", "Main"), ("vpc", "VPC"), ("status", "Status"), ("message", "Message")],
    "cluster": [("name", "Cluster"), ("type", "Type"), ("regions", "Regions"), ("instance-types", "Instance types"),
                ("spot", "Spot"), ("min-vcpus", "Min vCPUs"), ("max-vcpus", "Max vCPUs"),
                ("gpus-per-instance", "GPUs/instance"), ("status", "Status"), ("message", "Message")],
    "queue": [("name", "Queue"), ("cluster", "Cluster"), ("weights", "Weights"), ("priority", "Priority"),
              ("status", "Status"), ("message", "Message")],
    "image": [("name", "Image"), ("source", "Source"), ("status", "Status"), ("message", "Message")],
    "definition": [("name", "Definition"), ("image", "Image"), ("vcpus", "vCPUs"), ("memory", "Memory"),
                   ("gpus", "GPUs"), ("timeout", "Timeout"), ("retries", "Retries"), ("ratio", "Ratio"),
                   ("status", "Status"), ("message", "Message")],
}
DRY_RUN = inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
    bool, typer.Option("--dry-run", help="Validate and print what would be deployed (templates); change nothing.")])


def _finish(line: str, resource: Resource) -> None:
    """Print the outcome; a failed deployment is recorded (list-* shows why) and exits non-zero."""
    typer.echo(line)
    if resource.status == "FAILED":
        raise typer.Exit(1)


def _flat(value: Any) -> Any:
    """A table cell: lists as a,b and mappings as k=v,k=v."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def table_row(resource: Resource) -> dict:
    row = {k: _flat(v) for k, v in res.to_mapping(resource, with_status=True).items()}
    if isinstance(resource, Region):
        row["vpc"] = resource.vpc_id or resource.vpc_cidr or ""
    if isinstance(resource, Image):
        row["source"] = resource.uri or resource.path
    if isinstance(resource, Queue) and resource.weights == "auto" and resource.auto_weights:
        row["weights"] = f"auto ({_flat(resource.auto_weights)})"
    return row


def _context() -> Context:
    from hyper.cli.common import open_cli_context

    return open_cli_context()


def _field_params(kind: str) -> list[inspect.Parameter]:
    """One keyword parameter per field: bool fields are --x/--no-x flags, everything else text."""
    params = []
    for f in res.FIELDS[kind]:
        if f.key == "overrides":
            continue  # nested per-region settings: YAML only (hyper apply)
        name = f.attr
        annotation: Any  # an Annotated[...] form, which typer reads from the signature
        if f.parse is res._bool:
            option = typer.Option(f"--{f.key}/--no-{f.key}", help=f.help, show_default=False)
            annotation = Annotated[Optional[bool], option]
        else:
            option = typer.Option(f"--{f.key}", help=f.help, show_default=False)
            annotation = Annotated[Optional[str], option]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return params


def _values(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    by_attr = {f.attr: f.key for f in res.FIELDS[kind]}
    return {by_attr[k]: v for k, v in kwargs.items() if k in by_attr and v is not None}


def _make(fn: Callable, params: list[inspect.Parameter], doc: str) -> Callable:
    """Give `fn(**kwargs)` a real signature so typer builds options from it."""

    def command(**kwargs: Any) -> Any:
        return fn(**kwargs)

    setattr(command, "__signature__", inspect.Signature(params))  # read by inspect.signature, so by typer
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    command.__name__ = fn.__name__
    return command


def _guided(kind: str, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
    """The walk-through: ask for each missing field with a sensible default; re-ask until it parses."""
    out = dict(values)
    defaults = res.prompt_defaults(ctx, kind)
    for f in res.FIELDS[kind]:
        if not f.prompt or f.key in out:
            continue
        default = defaults.get(f.key)
        while True:
            answer = typer.prompt(f"{f.key} ({f.help})", default=_flat(default) if default is not None else "",
                                  show_default=True)
            try:
                f.parse(answer, f.key)
            except res.UsageError as exc:
                typer.echo(f"  {exc}", err=True)
                continue
            if answer != "":
                out[f.key] = answer
            break
    return out


def _print_plan(steps: list[Step], what: str) -> None:
    """--dry-run: each step with what it would send (templates as YAML), nothing sent."""
    if not steps:
        typer.echo(f"{what}: nothing to deploy")
        return
    import yaml

    from hyper.aws import stacks

    host = _context().host
    for step in steps:
        action = step.action
        if step.action == "deploy-stack":
            action = f"{stacks.stack_action(host, step.region, step.target)} stack"
        typer.echo(f"--- # {what}: would {action} {step.target} in {step.region}")
        if step.body:
            typer.echo(yaml.safe_dump(step.body, sort_keys=False, width=120), nl=False)


def _status_line(verb: str, resource: Resource) -> str:
    line = f"{verb} {resource.KIND} {resource.name} ({resource.status}"
    return line + (f": {resource.message})" if resource.message else ")")


def add_kind_commands(app: typer.Typer, kind: str) -> None:
    plural = res.PLURAL[kind]
    prog = f"hyper {plural}"
    name_param = inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   annotation=Annotated[str, typer.Argument(help=f"The {kind}'s name.")])
    guided_param = inspect.Parameter(
        "guided", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[bool], typer.Option(
            "--guided/--no-guided", help="Ask for missing fields (default: when run on a terminal).",
            show_default=False)])
    fields = _field_params(kind)

    @cli_errors(prog)
    def add(name: str, guided: Optional[bool] = None, dry_run: bool = False, **kwargs: Any) -> None:
        ctx = _context()
        values = _values(kind, kwargs)
        if guided if guided is not None else (sys.stdin.isatty() and sys.stdout.isatty() and not dry_run):
            res.check_new(ctx, kind, name)
            values = _guided(kind, ctx, values)
        resource = res.add(ctx, kind, name, values, dry_run=dry_run)
        if dry_run:
            _print_plan(res.planned_steps(resource), f"{kind} {name}")
            return
        _finish(_status_line("added", resource), resource)

    @cli_errors(prog)
    def update(name: str, dry_run: bool = False, **kwargs: Any) -> None:
        values = _values(kind, kwargs)
        if not values and not dry_run:
            raise res.UsageError(f"nothing to change in {kind} {name!r}",
                                 f"give at least one option; see `hyper {plural} update-{kind} --help`")
        resource = res.update(_context(), kind, name, values, dry_run=dry_run)
        if dry_run:
            _print_plan(res.planned_steps(resource), f"{kind} {name}")
            return
        _finish(_status_line("updated", resource), resource)

    @cli_errors(prog)
    def delete(name: str, force: bool = False, dry_run: bool = False) -> None:
        result = res.delete(_context(), kind, name, force=force, dry_run=dry_run)
        if dry_run:
            typer.echo("\n".join(f"would {line}" for line in result) or f"{kind} {name}: nothing to remove in AWS")
            return
        typer.echo(f"deleted {kind} {name}" + (f"; orphaned: {', '.join(result)}" if result else ""))

    @cli_errors(prog)
    def list_(output: str = "table") -> None:
        items = res.list_all(_context(), kind, refresh=True)
        render([table_row(r) for r in items], LIST_COLUMNS[kind], output,
               full_rows=[res.to_mapping(r, with_status=True) for r in items])

    app.command(f"add-{kind}", help=f"Add a {kind} (on an aws host: and deploy it).")(
        _make(add, [name_param, *fields, guided_param, DRY_RUN], f"Add a {kind}."))
    app.command(f"update-{kind}", help=f"Change fields of a {kind}; others keep their values.")(
        _make(update, [name_param, *fields, DRY_RUN], f"Change a {kind}."))
    force_param = inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, default=False,
                                    annotation=Annotated[bool, typer.Option(
                                        "--force", help="Delete even if in use; prints what it orphans.")])
    app.command(f"delete-{kind}", help=f"Delete a {kind} (refused while in use, unless --force).")(
        _make(delete, [name_param, force_param, DRY_RUN], f"Delete a {kind}."))
    output_param = inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, default="table",
                                     annotation=OutputOption)
    app.command(f"list-{plural}", help=f"List {plural} with their status.")(
        _make(list_, [output_param], f"List {plural}."))


def kind_app(kind: str) -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, help=f"Manage {res.PLURAL[kind]}.")
    add_kind_commands(app, kind)
    if kind == "queue":
        from hyper.cli.weights import add_refresh_command

        add_refresh_command(app)
    if kind == "region":
        name_param = inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                       annotation=Annotated[str, typer.Argument(help="An AWS region, e.g. us-east-1.")])

        @cli_errors("hyper regions")
        def init_main(name: str, dry_run: bool = False, **kwargs: Any) -> None:
            region = res.init_main_region(_context(), name, _values("region", kwargs), dry_run=dry_run)
            if dry_run:
                _print_plan(res.planned_steps(region), f"region {name}")
                return
            _finish(_status_line("main", region), region)

        app.command("init-main-region", help="Set the host's main region (its tables, queues and logs live there).")(
            _make(init_main, [name_param, *_field_params("region"), DRY_RUN], "Set the main region."))
    return app
