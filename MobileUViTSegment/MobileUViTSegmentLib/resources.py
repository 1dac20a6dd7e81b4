"""Where the bundled model cards, weights and sample data live.

In the source tree and inside Slicer they sit in the module's ``Resources`` folder beside this package; an installed
wheel carries the same folder as ``MobileUViTSegmentLib/bundled``. Extra model folders (a user's own trained models)
are added with the ``MOBILEUVIT_MODELS_PATH`` environment variable (``os.pathsep``-separated). What the program makes
for itself (downloaded weights, exported ONNX networks) goes to a per-user cache, never into ``Resources``, which may
be read-only inside a Slicer installation.

Models the user makes on their own machine (``finetune``: a model improved from corrected cases) go to a per-user
*local models* folder, which is searched after the bundled models and the ``MOBILEUVIT_MODELS_PATH`` folders, so they
join the catalog (and the Slicer panel's model selector) but can never shadow a bundled id. It is data, not cache
(deleting it loses the user's work): ``$MOBILEUVIT_LOCAL_MODELS_DIR``, else the platform's per-user data folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MODELS_PATH_VARIABLE = "MOBILEUVIT_MODELS_PATH"
CACHE_VARIABLE = "MOBILEUVIT_CACHE_DIR"
LOCAL_MODELS_VARIABLE = "MOBILEUVIT_LOCAL_MODELS_DIR"
APPLICATION_FOLDER = "mobileuvit-segment"


def resources_dir() -> Path:
    package = Path(__file__).resolve().parent
    bundled = package / "bundled"
    return bundled if bundled.is_dir() else package.parent / "Resources"


def models_dir() -> Path:
    return resources_dir() / "Models"


def sample_data_dir() -> Path:
    return resources_dir() / "SampleData"


def model_search_path() -> list[Path]:
    """Bundled models first, then the folders named in ``MOBILEUVIT_MODELS_PATH``, then the local models folder."""
    extra = [Path(part) for part in os.environ.get(MODELS_PATH_VARIABLE, "").split(os.pathsep) if part]
    return [models_dir(), *extra, local_models_dir()]


def local_models_dir() -> Path:
    """Where the user's own models go (``finetune``); it need not exist yet (the catalog skips a missing folder).

    ``$MOBILEUVIT_LOCAL_MODELS_DIR``; else on Windows ``%LOCALAPPDATA%\\mobileuvit-segment\\models``, on macOS
    ``~/Library/Application Support/mobileuvit-segment/models``, elsewhere
    ``${XDG_DATA_HOME:-~/.local/share}/mobileuvit-segment/models``.
    """
    if os.environ.get(LOCAL_MODELS_VARIABLE):
        return Path(os.environ[LOCAL_MODELS_VARIABLE])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APPLICATION_FOLDER / "models"


def cache_dir() -> Path:
    """``$MOBILEUVIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mobileuvit-segment``, else ``~/.cache/mobileuvit-segment``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / APPLICATION_FOLDER
