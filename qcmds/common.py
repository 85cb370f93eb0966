"""Settings shared by the q-commands: PBS-like option parsing (no -h for help: PBS uses -h for hold)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

APP_SETTINGS = dict(add_completion=False, pretty_exceptions_enable=False,
                    context_settings={"help_option_names": ["--help"]})

HostOption = Annotated[Optional[str], typer.Option("--host", help="Host to use (else $HYPER_HOST).")]


def wake_agent(ctx) -> None:
    """On a local host, make sure an agent runs to start queued work (it exits again when idle)."""
    if ctx.host.type == "local":
        from hyper.backends.local import ensure_agent

        ensure_agent(ctx.host)
