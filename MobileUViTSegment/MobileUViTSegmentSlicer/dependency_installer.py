"""Installing the worker's missing dependencies into Slicer's Python, only after the user agreed.

Called lazily (on the first Segment click, never at module import). Order matters:

1. PyTorch through the PyTorch extension (``PyTorchUtilsLogic.installTorch``), which picks the build that matches the
   GPU driver; without the extension the user is told to install it. That call blocks the GUI, so the panel does not
   use this path: it installs PyTorch with the same tool in a background process first (:mod:`.torch_install`), and
   :meth:`DependencyInstaller.ensure` keeps the blocking path for scripts.
2. The packages of ``Resources/requirements.txt``: with ``slicer.packaging.pip_ensure`` (Slicer 5.12+: consent
   dialog, pip in a background process while a progress dialog keeps the GUI responsive, restart prompt, and
   ``skip_packages`` so that pip never replaces torch, numpy, SimpleITK, vtk or requests), else with the older
   blocking ``slicer.util.pip_install`` after a confirmation dialog.

Everything Slicer-specific is reached through the injected ``slicerModule`` and ``pyTorchLogicFactory`` so tests can
check the decisions without Slicer.
"""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from .dependencies import (
    REQUIREMENTS_FILE,
    SKIPPED_PACKAGES,
    TORCH_REQUIREMENT,
    MissingRequirement,
    VersionLookup,
    installed_version,
    missing_requirements,
    read_requirements,
    torch_missing,
)

REQUESTER = "MobileUViT Segment"
TORCH_EXTENSION_MESSAGE = ("MobileUViT Segment needs PyTorch: install the 'PyTorch' extension from the Extensions "
                           "Manager, restart Slicer, and click Segment again.")


class DependencyError(Exception):
    """Dependencies cannot be installed; the message is one sentence for the user."""


def _pyTorchUtilsLogic() -> Optional[Any]:
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()


class DependencyInstaller:
    """Finds what is missing and installs it after the user agreed.

    Example (Slicer's Python console)::

        from MobileUViTSegmentSlicer import DependencyInstaller
        installer = DependencyInstaller()
        print([item.describe() for item in installer.missing()])
        installer.ensure()  # asks, installs, returns True when everything is there
    """

    def __init__(self, requirementsPath: Path = REQUIREMENTS_FILE, slicerModule: Optional[ModuleType] = None,
                 versionOf: VersionLookup = installed_version,
                 pyTorchLogicFactory: Callable[[], Optional[Any]] = _pyTorchUtilsLogic) -> None:
        self.requirementsPath = Path(requirementsPath)
        self._slicer = slicerModule
        self._versionOf = versionOf
        self._pyTorchLogicFactory = pyTorchLogicFactory

    @property
    def slicer(self) -> ModuleType:
        if self._slicer is None:
            import slicer

            self._slicer = slicer
        return self._slicer

    def missingPackages(self) -> list[MissingRequirement]:
        return missing_requirements(read_requirements(self.requirementsPath), self._versionOf)

    def missingTorch(self) -> Optional[MissingRequirement]:
        return torch_missing(self._versionOf)

    def missing(self) -> list[MissingRequirement]:
        torch = self.missingTorch()
        return ([torch] if torch else []) + self.missingPackages()

    def isSatisfied(self) -> bool:
        return not self.missing()

    def ensure(self) -> bool:
        """True when everything is installed (installing what is missing first); False when the user declined.

        Raises :class:`DependencyError` when installation is impossible or failed.
        """
        if self.isSatisfied():
            return True
        if self.missingTorch() and not self._installTorch():
            return False
        packages = self.missingPackages()
        if packages and not self._installPackages(packages):
            return False
        importlib.invalidate_caches()
        still = self.missing()
        if still:
            raise DependencyError("These Python packages are still missing after the installation: "
                                  f"{', '.join(item.describe() for item in still)}; restart Slicer and try again.")
        return True

    def _installTorch(self) -> bool:
        pyTorchLogic = self._pyTorchLogicFactory()
        if pyTorchLogic is None:
            raise DependencyError(TORCH_EXTENSION_MESSAGE)
        requirement = TORCH_REQUIREMENT.removeprefix("torch")
        try:
            torch = pyTorchLogic.installTorch(askConfirmation=True, torchVersionRequirement=requirement)
        except Exception as error:
            raise DependencyError(f"Installing PyTorch failed ({error}); install it from the PyTorch module "
                                  "and try again.") from error
        return torch is not None  # None: the user declined

    def _installPackages(self, missing: list[MissingRequirement]) -> bool:
        slicer = self.slicer
        packaging = getattr(slicer, "packaging", None)
        try:
            if packaging is not None and hasattr(packaging, "pip_ensure"):
                try:
                    packaging.pip_ensure(packaging.load_requirements(self.requirementsPath),
                                         skip_packages=list(SKIPPED_PACKAGES), requester=REQUESTER)
                except RuntimeError as error:
                    if "declined" in str(error).lower():
                        return False
                    raise
                return True
            listing = "\n".join(f"- {item.describe()}" for item in missing)
            if not slicer.util.confirmOkCancelDisplay(
                    f"{REQUESTER} needs these Python packages in Slicer's Python:\n\n{listing}\n\n"
                    "Install them now? This modifies Slicer's Python environment and may take a few minutes.",
                    windowTitle=f"{REQUESTER} - Install Python Packages"):
                return False
            slicer.util.pip_install([item.requirement for item in missing])
            return True
        except subprocess.CalledProcessError as error:
            raise DependencyError("Installing the Python packages failed (pip exit code "
                                  f"{error.returncode}); see the Python console for pip's output.") from error
        except RuntimeError as error:
            raise DependencyError(f"Installing the Python packages failed: {error}.") from error
