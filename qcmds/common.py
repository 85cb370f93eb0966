"""Settings shared by the q-commands: PBS-like option parsing (no -h for help: PBS uses -h for hold), shell
completion, `--version`, and click's usage errors as one line like every other error."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from hyper.cli.common import show_version

if TYPE_CHECKING:
    from typer._click import Context as ClickContext  # the click typer vendors: the base class declares this type

APP_SETTINGS: dict[str, Any] = dict(add_completion=True, pretty_exceptions_enable=False,
                                    context_settings={"help_option_names": ["--help"]})

HostOption = Annotated[Optional[str], typer.Option("--host", help="Host to use (else $HYPER_HOST).")]


VersionOption = Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                             help="Print hyper's version and exit.")]


def run(app: typer.Typer, prog: str) -> None:
    """Run a q-command; a usage error (unknown option, missing value) is one line and exit 2, not a box."""
    import os

    # typer's completion support costs ~30 ms of imports: load it only when it can be used (the options, help
    # that lists them, or the shell asking for completions), so qsub/qstat keep their cold-start budget
    app._add_completion = (any(a in ("--install-completion", "--show-completion", "--help") for a in sys.argv[1:])
                           or f"_{prog.upper()}_COMPLETE" in os.environ)
    try:
        code = app(prog_name=prog, standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # typer's click: NoSuchOption, MissingParameter, BadParameter...
        from hyper.cli.common import print_error

        message = getattr(exc, "format_message", exc.__str__)().replace("\n", " ")
        print_error(prog, message[:1].lower() + message[1:], f"see {prog} --help")
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


def cyclone_booleans(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """The seed's `--only-job-id-out true|false` (and `=true`): keep the flag for true, drop it for false."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, value = word.partition("=")
        if name in flags and (eq or (i + 1 < len(args) and args[i + 1].lower() in _BOOLEAN_WORDS)):
            if not eq:
                value = args[i + 1]
                i += 1
            if value.lower() not in _BOOLEAN_WORDS:
                from hyper.errors import UsageError

                raise UsageError(f"{name}={value} is not true or false", f"write {name} true, or just {name}")
            if _BOOLEAN_WORDS[value.lower()]:
                out.append(name)
        else:
            out.append(word)
        i += 1
    return out


_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False}  # not 1/0: those are job ids


class QCommand(TyperCommand):
    """A q-command: the seed's `--only-job-id-out true|false` (and `--only-job-id-out=false`) parse too."""

    boolean_flags = ("--only-job-id-out",)

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        from hyper.errors import HyperError

        try:
            args = cyclone_booleans(args, self.boolean_flags)
        except HyperError as exc:
            raise typer.BadParameter(f"{exc.message} ({exc.hint})") from None
        return super().parse_args(ctx, args)
