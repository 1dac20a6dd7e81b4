"""What the worker needs in Slicer's Python and what of it is missing, decided from package metadata only.

Checking must be cheap and side-effect free (the panel checks on every Segment click), so it reads installed
distributions' metadata with :mod:`importlib.metadata` and never imports the packages (importing torch alone takes
seconds and would load it into Slicer's process).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from packaging.requirements import InvalidRequirement, Requirement

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"

# Installed by the PyTorch extension (a build that matches the GPU driver), never by pip from PyPI.
TORCH_REQUIREMENT = "torch>=2.1"

# Never let pip install or replace these while installing our requirements' dependencies: Slicer ships its own
# numpy, SimpleITK, vtk and requests, and torch comes from the PyTorch extension.
SKIPPED_PACKAGES = ("torch", "numpy", "SimpleITK", "vtk", "requests")

VersionLookup = Callable[[str], Optional[str]]


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class MissingRequirement:
    requirement: str
    installed: Optional[str]  # None: not installed; otherwise a version outside the requirement

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.requirement} (not installed)"
        return f"{self.requirement} (version {self.installed} is installed)"


def read_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of a requirements file (comments, blank lines and pip options left out)."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def missing_requirements(requirements: Sequence[str],
                         version_of: VersionLookup = installed_version) -> list[MissingRequirement]:
    """The requirements that are not installed at an acceptable version (markers for other platforms are met)."""
    missing = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise ValueError(f"invalid requirement {text!r}: {error}") from error
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = version_of(requirement.name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(MissingRequirement(text, version))
    return missing


def torch_missing(version_of: VersionLookup = installed_version) -> Optional[MissingRequirement]:
    """The PyTorch requirement when it is not met, else None."""
    missing = missing_requirements([TORCH_REQUIREMENT], version_of)
    return missing[0] if missing else None
