"""A stand-in for 3D Slicer's Qt/application layer, so pytest can import the real ``MobileUViTSegment.py`` and run its
``ScriptedLoadableModuleTest`` against real MRML nodes, the real worker process and the bundled model.

slicer-core gives the real ``slicer`` package without the application: MRML classes, the Segmentations logic,
``slicer.util`` helpers that need no GUI, ``vtk``. What the application adds is replaced here, and only that:

============================  ================================================================================
``slicer.mrmlScene``          a real ``vtkMRMLScene`` with the real Segmentations module logic registered
``slicer.app``                :class:`ApplicationStub`: testing mode on, signal connections recorded
``slicer.modules``            ``segmentations.logic()`` returning that registered logic
``slicer.ScriptedLoadableModule``  the four base classes, re-implemented with the behaviour the module relies on
                              (parent attributes, ``resourcePath``, singleton parameter node, ``runTest``)
``slicer.parameterNodeWrapper``  the decorator and ``Choice``, storing values in the real parameter node the way
                              Slicer's serializers do; the GUI binding functions raise (there is no GUI)
``slicer.i18n``               ``tr``/``translate`` that return the text
``qt``, ``ctk``               modules whose every attribute raises :class:`QtUnavailable`
============================  ================================================================================

So anything that would need Qt (the widget's ``setup``, the .ui, the QTimer) fails loudly instead of passing
silently; those parts are checked statically by the tests. The harness restores everything on exit.
"""

from __future__ import annotations

import enum
import importlib
import logging
import os
import sys
import types
import typing
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import slicer

MODULE_DIR = Path(__file__).resolve().parents[2] / "MobileUViTSegment"
MODULE_NAME = "MobileUViTSegment"


class QtUnavailable(AttributeError):
    """Raised when code run under the harness touches Qt/CTK, which only a real Slicer has."""


class _QtlessModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise QtUnavailable(f"{self.__name__}.{name} is not available: the pytest harness has no Qt")


# -- slicer.app, slicer.modules ------------------------------------------------------------------------------------


class ApplicationStub:
    """What the module asks of ``slicer.app`` at import and in its self-test."""

    applicationName = "MobileUViTSegment pytest harness"  # noqa: N815 (Slicer's name)

    def __init__(self) -> None:
        self.connections: list[tuple[str, Callable]] = []

    def connect(self, signal: str, slot: Callable) -> None:
        self.connections.append((signal, slot))

    def testingEnabled(self) -> bool:
        return True

    def commandOptions(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(testingEnabled=True, noMainWindow=True)

    def processEvents(self) -> None:
        pass


# -- slicer.ScriptedLoadableModule -------------------------------------------------------------------------------


@dataclass
class ModuleParent:
    """The ``qSlicerScriptedLoadableModule`` a module class fills in."""

    path: str
    title: str = ""
    categories: list = None
    dependencies: list = None
    contributors: list = None
    helpText: str = ""  # noqa: N815 (Slicer's names)
    acknowledgementText: str = ""  # noqa: N815


class ScriptedLoadableModule:
    def __init__(self, parent: ModuleParent) -> None:
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename: str) -> str:
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    def runTest(self, msec: int = 100, **kwargs: Any) -> None:
        """As Slicer's "Reload and Test": instantiate ``<ModuleName>Test`` and call its ``runTest``."""
        module = importlib.import_module(self.__module__)
        testCase = getattr(module, self.moduleName + "Test")()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent: Any = None) -> None:
        self.parent = parent
        self.moduleName = self.__class__.__name__[: -len("Widget")]

    def resourcePath(self, filename: str) -> str:
        module = sys.modules[self.__module__]
        return os.path.join(os.path.dirname(module.__file__), "Resources", filename)

    def setup(self) -> None:
        raise QtUnavailable("the module widget needs Qt (.ui loading, QTimer): not available in the pytest harness")

    def cleanup(self) -> None:
        pass

    def enter(self) -> None:
        pass

    def exit(self) -> None:
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent: Any = None) -> None:
        self.parent = parent
        name = self.__class__.__name__
        self.moduleName = name[: -len("Logic")] if name.endswith("Logic") else name

    def getParameterNode(self) -> slicer.vtkMRMLScriptedModuleNode:
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node:
            return node
        node = slicer.vtkMRMLScriptedModuleNode()
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return slicer.mrmlScene.AddNode(node)


class ScriptedLoadableModuleTest(unittest.TestCase):
    messageDelay = 0  # noqa: N815 (Slicer's name)

    def delayDisplay(self, message: str, requestedDelay: Optional[int] = None, msec: Optional[int] = None) -> None:
        logging.info(message)

    def takeScreenshot(self, name: str, description: str, type: int = -1) -> None:
        logging.info(f"screenshot skipped (no Qt): {name}")


# -- slicer.parameterNodeWrapper ---------------------------------------------------------------------------------


class Choice:
    """The validator the module uses (``typing.Annotated[str, Choice([...])]``)."""

    def __init__(self, choices: typing.Iterable) -> None:
        self.choices = tuple(choices)

    def validate(self, value: Any) -> None:
        if value not in self.choices:
            raise ValueError(f"value {value!r} is not one of {self.choices}")


def _split(hint: Any) -> tuple[Any, tuple]:
    if typing.get_origin(hint) is typing.Annotated:
        return hint.__origin__, tuple(hint.__metadata__)
    return hint, ()


def _node_class(datatype: Any) -> Optional[type]:
    """The MRML node class of ``datatype`` (``Node`` or ``Optional[Node]``), else None."""
    candidates = typing.get_args(datatype) if typing.get_origin(datatype) is typing.Union else (datatype,)
    nodes = [c for c in candidates if isinstance(c, type) and issubclass(c, slicer.vtkMRMLNode)]
    return nodes[0] if nodes else None


class _Parameter:
    """One field, serialised into the parameter node as Slicer's serializers do."""

    def __init__(self, name: str, hint: Any, default: Any) -> None:
        self.name, self.hint = name, hint
        self.datatype, annotations = _split(hint)
        self.validators = [a for a in annotations if hasattr(a, "validate")]
        self.node_class = _node_class(self.datatype)
        if self.node_class is None and self.datatype not in (str, bool, int, float) and not (
                isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum)):
            raise TypeError(f"the harness cannot serialise parameter {name}: {hint}")
        self.default = default

    def write(self, node: slicer.vtkMRMLScriptedModuleNode, value: Any) -> None:
        for validator in self.validators:
            validator.validate(value)
        if self.node_class is not None:
            if value is not None and not isinstance(value, self.node_class):
                raise TypeError(f"{self.name} must be a {self.node_class.__name__}, got {type(value).__name__}")
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif self.datatype is bool:
            node.SetParameter(self.name, "True" if value else "False")
        elif isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            node.SetParameter(self.name, value.name)
        else:
            node.SetParameter(self.name, str(value))

    def read(self, node: slicer.vtkMRMLScriptedModuleNode) -> Any:
        if self.node_class is not None:
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.datatype is bool:
            return text == "True"
        if isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            return self.datatype[text]
        return self.datatype(text)


def parameterNodeWrapper(classtype: Optional[type] = None) -> Any:
    """Typed properties over a ``vtkMRMLScriptedModuleNode`` (no GUI binding: there is no GUI)."""

    def wrap(cls: type) -> type:
        hints = typing.get_type_hints(cls, include_extras=True)
        parameters = {name: _Parameter(name, hint, getattr(cls, name, None)) for name, hint in hints.items()}
        for name, parameter in parameters.items():
            setattr(cls, name, property(lambda self, p=parameter: p.read(self.parameterNode),
                                        lambda self, value, p=parameter: p.write(self.parameterNode, value)))

        def initialize(self: Any, parameterNode: slicer.vtkMRMLScriptedModuleNode) -> None:
            self.parameterNode = parameterNode
            for parameter in parameters.values():
                if not parameterNode.HasParameter(parameter.name):
                    parameter.write(parameterNode, parameter.default)

        def noGui(self: Any, *args: Any) -> None:
            raise QtUnavailable("connectGui/disconnectGui need Qt: not available in the pytest harness")

        cls.__init__ = initialize
        cls.allParameters = parameters
        cls.dataType = staticmethod(lambda name: parameters[name].hint)
        cls.getValue = lambda self, name: getattr(self, name)
        cls.setValue = lambda self, name, value: setattr(self, name, value)
        cls.connectGui = cls.connectParametersToGui = cls.disconnectGui = noGui
        cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(
            event, callback, priority)
        cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
        cls.StartModify = lambda self: self.parameterNode.StartModify()
        cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
        return cls

    return wrap if classtype is None else wrap(classtype)


# -- installing and removing the stand-ins -----------------------------------------------------------------------


def _submodule(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


_SLICER_ATTRIBUTES = ("app", "mrmlScene", "modules", "selfTests", "ScriptedLoadableModule", "parameterNodeWrapper",
                      "i18n")
_MISSING = object()


class SlicerApplicationHarness:
    """Context manager: inside it, ``import MobileUViTSegment`` works as in Slicer (minus Qt).

    Example::

        with SlicerApplicationHarness() as harness:
            module = harness.import_module()
            harness.create_module(module)            # runs the module class's __init__ as Slicer does
            module.MobileUViTSegmentTest("test_SegmentsSampleCaseOntoItsGrid").debug()
    """

    def __init__(self) -> None:
        self.scene: Optional[slicer.vtkMRMLScene] = None
        self.segmentations_logic = None
        self.app = ApplicationStub()
        self._saved_modules: dict[str, Any] = {}
        self._saved_attributes: dict[str, Any] = {}

    def __enter__(self) -> SlicerApplicationHarness:
        self.scene = slicer.vtkMRMLScene()
        self.segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentations_logic.SetMRMLScene(self.scene)
        stubs = {
            "qt": _QtlessModule("qt"),
            "ctk": _QtlessModule("ctk"),
            "slicer.ScriptedLoadableModule": _submodule(
                "slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
                ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
                ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest=ScriptedLoadableModuleTest),
            "slicer.parameterNodeWrapper": _submodule(
                "slicer.parameterNodeWrapper", parameterNodeWrapper=parameterNodeWrapper, Choice=Choice),
            "slicer.i18n": _submodule("slicer.i18n", tr=lambda text: text,
                                      translate=lambda context, text: text),
        }
        for name in [*stubs, MODULE_NAME]:
            self._saved_modules[name] = sys.modules.get(name, _MISSING)
        for name in _SLICER_ATTRIBUTES:
            self._saved_attributes[name] = getattr(slicer, name, _MISSING)
        sys.modules.update(stubs)
        sys.modules.pop(MODULE_NAME, None)
        slicer.app = self.app
        slicer.mrmlScene = self.scene
        slicer.modules = types.SimpleNamespace(
            segmentations=types.SimpleNamespace(logic=lambda: self.segmentations_logic))
        slicer.ScriptedLoadableModule = stubs["slicer.ScriptedLoadableModule"]
        slicer.parameterNodeWrapper = stubs["slicer.parameterNodeWrapper"]
        slicer.i18n = stubs["slicer.i18n"]
        if str(MODULE_DIR) not in sys.path:
            sys.path.insert(0, str(MODULE_DIR))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for name, module in self._saved_modules.items():
            if module is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name, value in self._saved_attributes.items():
            if value is _MISSING:
                if hasattr(slicer, name):
                    delattr(slicer, name)
            else:
                setattr(slicer, name, value)
        if self.scene is not None:
            self.scene.Clear(1)

    def import_module(self) -> types.ModuleType:
        """Import the real module file afresh (as Slicer's module loader does)."""
        sys.modules.pop(MODULE_NAME, None)
        return importlib.import_module(MODULE_NAME)

    def create_module(self, module: types.ModuleType) -> Any:
        """Instantiate the module class with a parent, as Slicer does when it loads the module."""
        return getattr(module, MODULE_NAME)(ModuleParent(path=module.__file__))
