"""Errors that the CLI prints as one line, never as a traceback."""

from __future__ import annotations

from pathlib import Path


class AlignkitError(Exception):
    """An error the user can act on; its message is the whole story, one line."""


class DataError(AlignkitError):
    """Bad input data, located: `prefs.jsonl:17: 'chosen' is missing`."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class ModelNotFound(AlignkitError):
    pass


class BackendError(AlignkitError):
    """A backend could not answer (unreachable endpoint after retries, missing extra, ...)."""
