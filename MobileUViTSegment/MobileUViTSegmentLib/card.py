"""Model cards: everything the engine, the panel and a reader need to know about one shipped model.

A card is a JSON file validated by ``card.schema.json``; this module turns it into typed, immutable objects. Nothing
about a model lives in code: labels, colours, terminology, the architecture and its config, the input space
(spacing, orientation, intensity normalisation, patch size), the weights file and its sha256, licences, the training
command and split, and measured figures all come from the card.

``kind`` (default ``segmentation``) is ``reconstruction`` for a network trained to reproduce its input (SRSNet's
R): such a card has no labels and is not a segmenter; it exists to start another training run
(``train --init-weights``). 2D cards need no activation field: a network with one output channel is read as
sigmoid > 0.5, any other as softmax argmax (see :mod:`.inference.predictor`).

``lineage`` (optional) is present on a model made on the user's machine from another one (``finetune``): the parent's
id, version and weights sha256 (which exact network it started from), the corrected cases it learned from, the
held-out cases it was measured on, mean Dice there before and after, the date and the exact command. Cards without it
(every shipped model) stay valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from .errors import ModelError

SCHEMA_FILE = "card.schema.json"
CARD_SUFFIX = ".card.json"


@dataclass(frozen=True)
class Code:
    """A coded concept (DICOM style): coding scheme designator, code value and code meaning."""

    scheme: str
    value: str
    meaning: str

    @classmethod
    def from_dict(cls, data: Optional[dict]) -> Optional[Code]:
        return None if data is None else cls(data["scheme"], data["value"], data["meaning"])

    def slicer_text(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


@dataclass(frozen=True)
class Terminology:
    """SNOMED CT coding of a segment, as Slicer's terminology and DICOM SEG expect it."""

    category: Code
    type: Code
    type_modifier: Optional[Code] = None
    anatomic_region: Optional[Code] = None
    anatomic_region_modifier: Optional[Code] = None

    @classmethod
    def from_dict(cls, data: dict) -> Terminology:
        return cls(
            category=Code.from_dict(data["category"]),
            type=Code.from_dict(data["type"]),
            type_modifier=Code.from_dict(data.get("type_modifier")),
            anatomic_region=Code.from_dict(data.get("anatomic_region")),
            anatomic_region_modifier=Code.from_dict(data.get("anatomic_region_modifier")),
        )

    def slicer_entry(self) -> str:
        """Serialise as Slicer's ``TerminologyEntry`` segment tag (the format .seg.nrrd files store)."""

        def text(code: Optional[Code]) -> str:
            return code.slicer_text() if code else "^^"

        return "~".join([
            "Segmentation category and type - 3D Slicer General Anatomy list",
            text(self.category), text(self.type), text(self.type_modifier),
            "Anatomic codes - DICOM master list",
            text(self.anatomic_region), text(self.anatomic_region_modifier),
        ])


@dataclass(frozen=True)
class LabelSpec:
    value: int
    name: str
    color: tuple[int, int, int]
    terminology: Terminology

    @property
    def color_float(self) -> tuple[float, float, float]:
        return tuple(channel / 255.0 for channel in self.color)


@dataclass(frozen=True)
class IntensitySpec:
    """How raw voxel values become network inputs.

    ``zscore``: subtract the image mean, divide by its standard deviation (MRI).
    ``window``: clip to [lower, upper] and scale to [0, 1] (CT in Hounsfield units).
    ``unit``: divide by 255 (8-bit photographs and ultrasound).
    """

    method: str
    lower: Optional[float] = None
    upper: Optional[float] = None


@dataclass(frozen=True)
class InputSpec:
    spatial_dims: int
    channels: int
    spacing: Optional[tuple[float, ...]]
    orientation: Optional[str]
    intensity: IntensitySpec
    patch_size: tuple[int, ...]
    description: str = ""

    @classmethod
    def from_dict(cls, spec: dict) -> InputSpec:
        """The ``input`` section of a card (or of a pre-training recipe, which describes its input the same way)."""
        return cls(spatial_dims=spec["spatial_dims"], channels=spec["channels"],
                   spacing=tuple(spec["spacing"]) if spec.get("spacing") else None,
                   orientation=spec.get("orientation"), intensity=IntensitySpec(**spec["intensity"]),
                   patch_size=tuple(spec["patch_size"]), description=spec.get("description", ""))


@dataclass(frozen=True)
class PostprocessingSpec:
    largest_component: bool = True
    fill_holes: bool = True


@dataclass(frozen=True)
class InferenceSpec:
    overlap: float = 0.5
    sw_batch_size: int = 2
    postprocessing: PostprocessingSpec = field(default_factory=PostprocessingSpec)
    backend: str = "pytorch"  # or "onnxruntime" (CPU; falls back to PyTorch when unavailable)


@dataclass(frozen=True)
class WeightsSpec:
    file: str
    sha256: str
    size: int
    dtype: str = "float32"
    url: Optional[str] = None  # where to download the file when it is not beside the card (into the user's cache)

    def to_dict(self) -> dict[str, Any]:
        """The card's ``weights`` entry; no ``url`` key when there is none (the schema wants a string there)."""
        entry = {"file": self.file, "sha256": self.sha256, "size": self.size, "dtype": self.dtype}
        return {**entry, "url": self.url} if self.url else entry


@dataclass(frozen=True)
class ModelCard:
    id: str
    version: str
    title: str
    description: str
    task: str
    modality: str
    labels: tuple[LabelSpec, ...]
    architecture: str
    architecture_config: dict[str, Any]
    input: InputSpec
    inference: InferenceSpec
    weights: WeightsSpec
    licenses: dict[str, str]
    training: dict[str, Any]
    metrics: dict[str, Any]
    timings: dict[str, Any]
    citations: tuple[str, ...]
    folder: Path
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    kind: str = "segmentation"
    lineage: dict[str, Any] = field(default_factory=dict)  # empty unless made from a parent model (finetune)

    @property
    def parent_id(self) -> Optional[str]:
        """The id of the model this one was fine-tuned from, or None for a model trained from scratch."""
        return self.lineage.get("parent", {}).get("id") if self.lineage else None

    @property
    def is_segmenter(self) -> bool:
        return self.kind == "segmentation"

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights.file

    @property
    def num_classes(self) -> int:
        """Output channels of the network: background plus one per label."""
        return len(self.labels) + 1

    def label_by_value(self, value: int) -> LabelSpec:
        for label in self.labels:
            if label.value == value:
                return label
        raise KeyError(value)


@lru_cache(maxsize=1)
def card_schema() -> dict:
    from .resources import models_dir  # local import: resources imports nothing from here, but keeps start-up lean

    return json.loads((models_dir() / SCHEMA_FILE).read_text(encoding="utf-8"))


def validate_card_dict(data: dict, source: str) -> None:
    import jsonschema  # lazily: inside Slicer the model list can show before the dependencies are installed

    try:
        jsonschema.validate(data, card_schema())
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ModelError(f"model card {source} is invalid at {where}: {error.message}") from error
    values = [label["value"] for label in data["labels"]]
    if not values and data.get("kind", "segmentation") == "segmentation":
        raise ModelError(f"model card {source} has no labels; a segmentation model needs at least one")
    if sorted(values) != list(range(1, len(values) + 1)):
        raise ModelError(f"model card {source}: label values must be 1..{len(values)}, got {values}")


def card_from_dict(data: dict, folder: Path, source: str = "<memory>") -> ModelCard:
    validate_card_dict(data, source)
    inference = data.get("inference", {})
    return ModelCard(
        id=data["id"],
        version=data["version"],
        title=data["title"],
        description=data["description"],
        task=data["task"],
        modality=data["modality"],
        labels=tuple(
            LabelSpec(item["value"], item["name"], tuple(item["color"]), Terminology.from_dict(item["terminology"]))
            for item in data["labels"]
        ),
        architecture=data["architecture"]["name"],
        architecture_config=dict(data["architecture"].get("config", {})),
        input=InputSpec.from_dict(data["input"]),
        inference=InferenceSpec(
            overlap=inference.get("overlap", 0.5),
            sw_batch_size=inference.get("sw_batch_size", 2),
            postprocessing=PostprocessingSpec(**inference.get("postprocessing", {})),
            backend=inference.get("backend", "pytorch"),
        ),
        weights=WeightsSpec(**data["weights"]),
        licenses=dict(data["licenses"]),
        training=dict(data.get("training", {})),
        metrics=dict(data.get("metrics", {})),
        timings=dict(data.get("timings", {})),
        citations=tuple(data.get("citations", [])),
        folder=folder,
        raw=data,
        kind=data.get("kind", "segmentation"),
        lineage=dict(data.get("lineage", {})),
    )


def load_card(path: Path) -> ModelCard:
    """Read and validate one card file; the weights file is resolved next to it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelError(f"model card {path} cannot be read: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ModelError(f"model card {path} is not valid JSON: {error.msg} at line {error.lineno}") from error
    return card_from_dict(data, path.parent, str(path))
