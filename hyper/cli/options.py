"""Options every listing command of the admin CLI shares, declared once (typer; kept out of hyper/cli/common.py,
which the q-commands' fast path imports without typer)."""

from __future__ import annotations

from typing import Annotated

import typer

OUTPUT_FORMATS = "table, json, yaml or csv."
OutputOption = Annotated[str, typer.Option("--output", "-o", help=OUTPUT_FORMATS)]
