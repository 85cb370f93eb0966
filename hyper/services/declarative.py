"""`hyper apply -f configs/` and `hyper export`: the whole resource set as YAML.

A file holds sections named after the kinds (``regions:``, ``clusters:``, ``queues:``, ``images:``,
``definitions:``), each a list of mappings with a ``name`` and the same keys as the command-line options
(``max-vcpus: 64``, ``memory: 4GiB``). Everything is parsed and validated against the store plus the
whole new set before the first write, so a typo on line 80 leaves nothing half-applied; every error names
the file and line. Apply is declarative per resource: a key left out takes its default. It never deletes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hyper.errors import HyperError, UsageError
from hyper.models import Cluster, Image, Queue, Region, Resource
from hyper.services import resources as res

if TYPE_CHECKING:
    import yaml

    from hyper.services.context import Context


@dataclass
class Item:
    kind: str
    name: str
    values: dict[str, Any]
    where: str  # file:line, for errors
    main: bool | None = None


@dataclass
class Change:
    action: str  # create | update | unchanged
    resource: Resource
    steps: list = field(default_factory=list)  # what was (or, dry run, would be) sent to AWS
    previous: Resource | None = None  # as the store had it (read once, by plan)


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise UsageError(f"{raw} holds no .yaml files", "point -f at a YAML file or a directory of them")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise UsageError(f"no such file or directory: {raw}", "check the path given to -f")
    return out


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def load_items(paths: list[str]) -> list[Item]:
    """Read every document of every file, checking each key against the field table (with its line)."""
    import yaml

    items: list[Item] = []
    seen: dict[tuple[str, str], str] = {}
    for path in _files(paths):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}", "check the file's permissions and encoding") from None
        loader = yaml.SafeLoader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                items += _document(path, node, loader, seen)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UsageError(f"{path}{line}: not valid YAML: {problem}", "fix the file's syntax") from None
        finally:
            loader.dispose()
    return items


def _document(path: Path, node: yaml.Node, loader: yaml.SafeLoader, seen: dict) -> list[Item]:
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return []  # an empty document (a file of comments)
    if not isinstance(node, yaml.MappingNode):
        raise UsageError(f"{_where(path, node)}: expected sections like `queues:`",
                         f"start the file with one of {', '.join(res.SINGULAR)}")
    items = []
    for key_node, value_node in node.value:
        section = key_node.value
        kind = res.SINGULAR.get(section)
        if kind is None:
            raise UsageError(f"{_where(path, key_node)}: unknown section {section!r}",
                             f"use one of {', '.join(res.SINGULAR)}")
        if isinstance(value_node, yaml.ScalarNode) and value_node.value in ("", "~", "null"):
            continue
        if not isinstance(value_node, yaml.SequenceNode):
            raise UsageError(f"{_where(path, value_node)}: {section} must be a list of `- name: ...` entries",
                             f"e.g. {section}:\n  - name: example")
        for entry in value_node.value:
            items.append(_entry(path, kind, entry, loader, seen))
    return items


def _entry(path: Path, kind: str, entry: yaml.Node, loader: yaml.SafeLoader, seen: dict) -> Item:
    import yaml

    where = _where(path, entry)
    if not isinstance(entry, yaml.MappingNode):
        raise UsageError(f"{where}: each {kind} must be a mapping with a name", f"e.g. - name: my-{kind}")
    fields = res.field_map(kind)
    allowed = {"name", *fields} | ({"main"} if kind == "region" else set())
    for key_node, _ in entry.value:
        if key_node.value not in allowed:
            raise UsageError(f"{_where(path, key_node)}: unknown {kind} key {key_node.value!r}",
                             f"{kind} keys: {', '.join(sorted(allowed))}")
    data = loader.construct_document(entry)
    name = data.pop("name", None)
    if name is None or name == "":
        raise UsageError(f"{where}: a {kind} without a name", "add `name: ...` to it")
    if not isinstance(name, str):
        raise UsageError(f"{where}: {kind} name {name!r} must be text", f"quote it: name: \"{name}\"")
    if (kind, name) in seen:
        raise UsageError(f"{where}: {kind} {name!r} is also defined at {seen[(kind, name)]}", "keep one of them")
    seen[(kind, name)] = where
    if kind == "image" and isinstance(data.get("path"), str) and data["path"] and \
            not Path(data["path"]).expanduser().is_absolute():
        data["path"] = str((path.parent / data["path"]).resolve())  # relative to the file, not the shell
    main = data.pop("main", None)
    if main is not None and not isinstance(main, bool):
        raise UsageError(f"{where}: region {name}: main must be true or false", "e.g. main: true")
    return Item(kind, name, data, where, main)


def _comparable(resource: Resource) -> dict:
    body = resource.to_dict()
    body.pop("status", None)
    body.pop("message", None)
    return body


def plan(ctx: Context, items: list[Item]) -> list[Change]:
    """What apply would do, fully validated against the store plus every new value (nothing written)."""
    store = ctx.store
    view = res.ResourceView(store)
    changes: list[Change] = []
    order = {k: n for n, k in enumerate(res.KIND_ORDER)}
    for item in sorted(items, key=lambda i: order[i.kind]):
        current = store.get_resource(item.kind, item.name)
        resource = _declared(ctx, item, current, view)
        if current is None:
            resource.status, resource.message = res.initial_status(ctx.host.type)
            action = "create"
        elif _comparable(current) == _comparable(resource) and current.status != "FAILED":
            resource = current
            action = "unchanged"
        else:
            resource.status, resource.message = current.status, current.message
            action = "update"
        view.staged[(item.kind, item.name)] = resource
        changes.append(Change(action, resource, previous=current))
    _check(ctx, changes, view, {(i.kind, i.name): i.where for i in items})
    return changes


def _declared(ctx: Context, item: Item, current: Resource | None, view: res.ResourceView) -> Resource:
    """The resource an item declares, with its defaults and the fields the host owns (not the file) kept."""
    try:
        values = dict(item.values)
        if item.kind == "cluster" and not values.get("type"):
            values["type"] = res.default_type(ctx.host.type)
        resource = res.build(item.kind, item.name, values)
        res._defaults(ctx, resource, view)
    except HyperError as exc:
        raise UsageError(f"{item.where}: {item.kind} {item.name}: {exc.message}", exc.hint) from None
    if isinstance(resource, Region):
        resource.main = bool(item.main) or ctx.host.main_region == item.name or \
            bool(isinstance(current, Region) and current.main and item.main is None)
    if isinstance(current, Cluster) and isinstance(resource, Cluster):  # provisioning's, not declared
        resource.environment_generation = current.environment_generation
    if isinstance(current, Image) and isinstance(resource, Image):  # what the last build pushed, not declared
        resource.tag, resource.digest = current.tag, current.digest
    if isinstance(current, Queue) and isinstance(resource, Queue):  # computed, not declared: refresh-weights
        resource.auto_weights, resource.auto_weights_at = current.auto_weights, current.auto_weights_at
        resource.auto_weights_note = current.auto_weights_note
    return resource


def _check(ctx: Context, changes: list[Change], view: res.ResourceView, where: dict[tuple[str, str], str]) -> None:
    """Validate every change against the staged view, then render every template: a bad value stops apply
    before its first write. Errors name the file and line that declared the resource."""
    for change in changes:
        r = change.resource
        with _declared_at(where[(r.KIND, r.name)]):
            res.validate(r, view, ctx.host.type)
    for change in changes:
        r = change.resource
        if change.action != "unchanged":
            from hyper.services import provision

            with _declared_at(where[(r.KIND, r.name)]):
                change.steps = provision.plan(ctx, r, view=view, previous=change.previous)
            with _declared_at(where[(r.KIND, r.name)]):
                res.validate_dependents(r, view, ctx.host.type)
    mains = [r.name for r in view.all("region") if isinstance(r, Region) and r.main]
    if len(mains) > 1:
        raise UsageError(f"more than one main region: {', '.join(mains)}", "mark exactly one region `main: true`")


@contextmanager
def _declared_at(where: str) -> Iterator[None]:
    """A HyperError raised inside, prefixed with the file:line that declared the resource."""
    try:
        yield
    except HyperError as exc:
        raise HyperError(f"{where}: {exc.message}", exc.hint, exc.exit_code) from None


def apply(ctx: Context, paths: list[str], dry_run: bool = False) -> list[Change]:
    """Validate everything, then record and deploy each changed resource, referents first."""
    changes = plan(ctx, load_items(paths))  # validated and rendered: nothing can fail on input from here
    if dry_run:
        return changes
    for change in changes:
        if change.action != "unchanged":
            res.save(ctx, change.resource, "CREATING" if change.action == "create" else "UPDATING",
                     previous=change.previous, steps=change.steps)
    return changes


def export(ctx: Context) -> str:
    """Every resource of the host as an apply-able YAML document (no status: that belongs to the host)."""
    import yaml

    body: dict[str, list] = {}
    for kind in res.KIND_ORDER:
        found = res.list_all(ctx, kind)
        if found:
            body[res.PLURAL[kind]] = [res.to_mapping(r) for r in found]
    header = f"# hyper export of host {ctx.host.name}; apply with `hyper apply -f FILE`\n"
    return header + (yaml.safe_dump(body, sort_keys=False, default_flow_style=False) if body else "{}\n")
