"""The `alignkit` command line: each command parses, calls one library job, prints.

One module per kind of command (`measure`, `align`, `tools`; the guard's group lives in `guard.cli`),
all sharing the option bundles of `base`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from alignkit import __version__
from alignkit.cli import align, measure, tools
from alignkit.cli.base import app, console, err
from alignkit.errors import AlignkitError

__all__ = ["align", "app", "main", "measure", "tools"]


def _version(value: bool) -> None:
    if value:
        console.print(f"alignkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


def main() -> None:
    # Our own progress display replaces the libraries' per-tensor bars and advisory chatter.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        app()
    except AlignkitError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
