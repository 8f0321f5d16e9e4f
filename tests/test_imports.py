"""Every module imports on its own, in any order, and the layers keep their direction.

An import circle only shows when a module of the circle is imported first, so each module is imported
with no alignkit module loaded yet. One interpreter does them all, dropping alignkit's modules between
imports (third-party ones stay loaded: a fresh interpreter per module would cost minutes here).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import alignkit

PACKAGE = Path(alignkit.__file__).parent


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_alone(names: list[str]) -> dict[str, dict[str, object]]:
    """For each module: the error its import raised (None if it imported) and the alignkit modules it
    loaded, each found with no alignkit module loaded before it."""
    script = """
import importlib, json, sys, traceback
out = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "alignkit" or m.startswith("alignkit.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
        error = None
    except Exception:
        error = traceback.format_exc(limit=-3)
    out[name] = {"error": error, "loaded": sorted(m for m in sys.modules if m.startswith("alignkit."))}
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)], capture_output=True, text=True, timeout=600, check=True
    )
    result: dict[str, dict[str, object]] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_every_module_imports_first_without_a_circle() -> None:
    names = modules()
    assert "alignkit.report.run" in names and "alignkit.posture" in names
    found = imported_alone(names)
    failed = {name: r["error"] for name, r in found.items() if r["error"]}
    assert not failed, "\n".join(f"{name}:\n{error}" for name, error in failed.items())


def test_measurement_does_not_import_its_pages() -> None:
    found = imported_alone(["alignkit.posture", "alignkit.curate"])
    for name in found:
        loaded = found[name]["loaded"]
        assert isinstance(loaded, list) and loaded
        assert not [m for m in loaded if m.startswith(("alignkit.report", "alignkit.jobs"))], (name, loaded)


def imports_in(path: Path) -> set[str]:
    """Every module a file imports, at its top or deferred inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_posture_and_curation_never_import_the_layers_above_them() -> None:
    """`report` and `jobs` build on `posture` and `curate`; a deferred import back would be a circle."""
    files = [PACKAGE / "posture.py", *sorted((PACKAGE / "curate").rglob("*.py"))]
    for path in files:
        above = sorted(m for m in imports_in(path) if m.startswith(("alignkit.report", "alignkit.jobs")))
        assert not above, (path.name, above)
