"""Where the bundled model cards, weights and sample data live.

In the source tree and inside Slicer they sit in the module's ``Resources`` folder beside this package; an installed
wheel carries the same folder as ``MobileUViTSegmentLib/bundled``. Extra model folders (a user's own trained models)
are added with the ``MOBILEUVIT_MODELS_PATH`` environment variable (``os.pathsep``-separated). What the program makes
for itself (downloaded weights, exported ONNX networks) goes to a per-user cache, never into ``Resources``, which may
be read-only inside a Slicer installation.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_PATH_VARIABLE = "MOBILEUVIT_MODELS_PATH"
CACHE_VARIABLE = "MOBILEUVIT_CACHE_DIR"


def resources_dir() -> Path:
    package = Path(__file__).resolve().parent
    bundled = package / "bundled"
    return bundled if bundled.is_dir() else package.parent / "Resources"


def models_dir() -> Path:
    return resources_dir() / "Models"


def sample_data_dir() -> Path:
    return resources_dir() / "SampleData"


def model_search_path() -> list[Path]:
    """Bundled models first, then the folders named in ``MOBILEUVIT_MODELS_PATH``."""
    extra = [Path(part) for part in os.environ.get(MODELS_PATH_VARIABLE, "").split(os.pathsep) if part]
    return [models_dir(), *extra]


def cache_dir() -> Path:
    """``$MOBILEUVIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mobileuvit-segment``, else ``~/.cache/mobileuvit-segment``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mobileuvit-segment"
