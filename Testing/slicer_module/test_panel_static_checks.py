"""What only Slicer's Qt can run (the .ui, its binding to the parameter node, the widget code), checked statically.

The .ui must parse as Qt Designer XML, every ``SlicerParameterName`` must name a parameter-node field with a widget
type that Slicer's ``connectGui`` can bind for that field's type (it matches widget classes exactly), and every
``self.ui.<name>`` the widget code uses must exist in the .ui.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import struct
import typing
import xml.etree.ElementTree as ElementTree
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_application_harness import SlicerApplicationHarness

REPOSITORY = Path(__file__).resolve().parents[2]
MODULE_DIR = REPOSITORY / "MobileUViTSegment"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MobileUViTSegment.ui"
ICON_FILE = MODULE_DIR / "Resources" / "Icons" / "MobileUViTSegment.png"
MODULE_FILE = MODULE_DIR / "MobileUViTSegment.py"

# Fields the widget keeps in sync by hand, and why: the model list is only known at run time (a QComboBox binding
# needs a fixed Choice), qMRMLSegmentationShow3DButton is not a plain QPushButton (connectGui matches exactly), and the
# import-mode combo shows sentences while the node keeps the mode (item data).
BOUND_BY_HAND = {"modelId": "onModelSelected", "show3D": "onShow3DToggled", "importMode": "onImportModeSelected"}
SECTIONS_DIR = MODULE_DIR / "MobileUViTSegmentWidgets"  # the Review and Improve sections get the same ``ui``


@pytest.fixture(scope="module")
def ui_root() -> ElementTree.Element:
    return ElementTree.parse(UI_FILE).getroot()


@pytest.fixture(scope="module")
def widgets(ui_root) -> dict[str, ElementTree.Element]:
    return {widget.get("name"): widget for widget in ui_root.iter("widget")}


@pytest.fixture(scope="module")
def parameter_fields() -> dict[str, typing.Any]:
    with SlicerApplicationHarness() as harness:
        module = harness.import_module()
        return {name: parameter.hint for name, parameter in module.MobileUViTSegmentParameterNode.allParameters.items()}


def property_value(widget: ElementTree.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop[0]
            if value.tag == "stringlist":
                return [item.text for item in value.findall("string")]
            return value.text
    return None


def test_the_ui_is_qt_designer_xml_for_a_mrml_widget(ui_root, widgets):
    assert ui_root.tag == "ui" and ui_root.get("version") == "4.0"
    assert ui_root.findtext("class") == "MobileUViTSegment"
    top = ui_root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "MobileUViTSegment")
    declared = {custom.findtext("class") for custom in ui_root.iter("customwidget")}
    used = {widget.get("class") for widget in widgets.values()}
    qt_classes = {name for name in used if name.startswith("Q")}
    assert used - qt_classes <= declared, f"undeclared custom widgets: {used - qt_classes - declared}"
    assert len(widgets) == len(list(ui_root.iter("widget"))), "widget names must be unique"


def _binding_allowed(widget: ElementTree.Element, hint) -> tuple[bool, str]:
    """Mirror of Slicer's parameterNodeWrapper GUI connectors for the types this module uses."""
    base, *annotations = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
    widget_class = widget.get("class")
    if isinstance(base, type) and base.__name__.startswith("vtkMRML"):
        node_types = property_value(widget, "nodeTypes")
        return widget_class == "qMRMLNodeComboBox" and node_types == [base.__name__], \
            f"{widget_class} with nodeTypes {node_types}"
    if base is str:
        has_choice = any(type(a).__name__ == "Choice" for a in annotations)
        return widget_class in ({"QComboBox", "QLineEdit"} if has_choice else {"QLineEdit"}), widget_class
    if base is bool:
        return widget_class in {"QCheckBox", "QPushButton"}, widget_class
    return False, f"{widget_class} for {hint}"


def test_every_parameter_binding_names_a_field_with_a_widget_connectgui_can_bind(widgets, parameter_fields):
    bound = {}
    for name, widget in widgets.items():
        field = property_value(widget, "SlicerParameterName")
        if field is None:
            continue
        assert field in parameter_fields, f"{name}: SlicerParameterName {field!r} is not a parameter-node field"
        assert field not in bound, f"{field} is bound twice ({bound[field]} and {name})"
        allowed, detail = _binding_allowed(widget, parameter_fields[field])
        assert allowed, f"{name}: connectGui cannot bind {detail} to {field}: {parameter_fields[field]}"
        bound[field] = name
    assert bound == {"inputVolume": "inputVolumeSelector", "device": "deviceSelector",
                     "outputSegmentation": "outputSegmentationSelector", "roi": "roiSelector",
                     "allFrames": "allFramesCheckBox", "uncertainty": "uncertaintyCheckBox", "tta": "ttaCheckBox",
                     "probabilities": "probabilitiesCheckBox",
                     "referenceSegmentation": "referenceSegmentationSelector"}
    assert set(parameter_fields) - set(bound) == set(BOUND_BY_HAND)


def test_fields_without_a_ui_binding_are_synced_by_the_widget():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    widget = next(node for node in tree.body if isinstance(node, ast.ClassDef)
                  and node.name == "MobileUViTSegmentWidget")
    methods = {node.name: node for node in widget.body if isinstance(node, ast.FunctionDef)}
    for field, handler in BOUND_BY_HAND.items():
        assert handler in methods, f"the widget has no {handler}"
        written = {target.attr for node in ast.walk(methods[handler]) if isinstance(node, ast.Assign)
                   for target in node.targets if isinstance(target, ast.Attribute)
                   and isinstance(target.value, ast.Attribute) and target.value.attr == "_parameterNode"}
        assert field in written, f"{handler} should write {field} into the parameter node"


def test_every_ui_widget_the_panel_code_uses_exists(widgets):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert used and used <= set(widgets), f"missing in the .ui: {sorted(used - set(widgets))}"
    for section in sorted(SECTIONS_DIR.glob("*.py")):  # they hold the same ui as ``self.ui`` or ``ui``
        used = set(re.findall(r"\bui\.(\w+)", section.read_text(encoding="utf-8")))
        assert used <= set(widgets), f"{section.name}: missing in the .ui: {sorted(used - set(widgets))}"


def test_the_sections_import_only_what_exists():
    """The Review and Improve sections import Slicer-package functions by name; a renamed one would only fail in
    Slicer's setup(), so every imported name is checked here."""
    for section in sorted(SECTIONS_DIR.glob("*.py")):
        tree = ast.parse(section.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("MobileUViTSegmentSlicer"):
                module = importlib.import_module(node.module)
                missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
                assert not missing, f"{section.name}: {node.module} has no {missing}"


def test_the_panel_has_the_promised_controls(widgets):
    expected = {"inputVolumeSelector": "qMRMLNodeComboBox", "modelSelector": "QComboBox", "modelInfoLabel": "QLabel",
                "deviceSelector": "QComboBox", "deviceInfoLabel": "QLabel", "outputSegmentationSelector":
                "qMRMLNodeComboBox", "show3DButton": "qMRMLSegmentationShow3DButton", "applyButton": "QPushButton",
                "progressBar": "QProgressBar", "statusLabel": "QLabel", "importModeSelector": "QComboBox",
                "roiSelector": "qMRMLNodeComboBox", "allFramesCheckBox": "QCheckBox", "restoreButton": "QPushButton",
                "uncertaintyCheckBox": "QCheckBox", "ttaCheckBox": "QCheckBox", "reviewListWidget": "QListWidget",
                "statisticsTable": "QTableWidget", "measureButton": "QPushButton",
                "exportStatisticsButton": "QPushButton", "referenceSegmentationSelector": "qMRMLNodeComboBox",
                "compareButton": "QPushButton", "comparisonTable": "QTableWidget",
                "exportComparisonButton": "QPushButton", "markCorrectedButton": "QPushButton",
                "correctedCasesLabel": "QLabel", "improveButton": "QPushButton", "improveProgressBar": "QProgressBar",
                "improveStatusLabel": "QLabel", "importWeightsButton": "QPushButton",
                "probabilitiesCheckBox": "QCheckBox"}
    assert {name: widgets[name].get("class") for name in expected} == expected
    output = widgets["outputSegmentationSelector"]
    assert property_value(output, "noneEnabled") == "true"
    assert property_value(output, "noneDisplay") == "Create new segmentation"
    assert property_value(output, "addEnabled") == "false"  # new nodes only at import time
    assert property_value(widgets["applyButton"], "text") == "Segment"
    assert property_value(widgets["modelInfoLabel"], "wordWrap") == "true"


def test_scene_connections_reach_existing_mrml_widgets(ui_root, widgets):
    connections = list(ui_root.iter("connection"))
    assert connections
    receivers = set()
    for connection in connections:
        sender, receiver = connection.findtext("sender"), connection.findtext("receiver")
        assert sender in widgets and receiver in widgets
        assert connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        assert connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
        assert widgets[receiver].get("class") == "qMRMLNodeComboBox"  # the classes here that have setMRMLScene
        receivers.add(receiver)
    assert receivers == {"inputVolumeSelector", "outputSegmentationSelector", "roiSelector",
                         "referenceSegmentationSelector"}


def test_the_icon_is_a_valid_128_pixel_rgba_png():
    data = ICON_FILE.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, color_type) == (128, 128, 8, 6)
    image = sitk.ReadImage(str(ICON_FILE))
    assert image.GetSize() == (128, 128) and image.GetNumberOfComponentsPerPixel() == 4
    pixels = sitk.GetArrayFromImage(image)
    assert pixels[..., 3].max() == 255 and pixels[0, 0, 3] == 0  # opaque tile, transparent corners
    assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 100  # drawn, not a flat square
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]


def test_the_icon_is_what_the_generator_draws():
    spec = importlib.util.spec_from_file_location("draw_module_icon", REPOSITORY / "tools" / "draw_module_icon.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.png_bytes(generator.draw()) == ICON_FILE.read_bytes()
