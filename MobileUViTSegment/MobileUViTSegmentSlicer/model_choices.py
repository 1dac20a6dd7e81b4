"""The models the panel offers, and the text that describes the selected one (description, licence, expected time).

Reads the core's catalog (light modules only: JSON cards validated with jsonschema, no torch). The import is lazy
and guarded because on a fresh Slicer the required packages are not installed yet; the panel then says so instead
of failing to load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from MobileUViTSegmentLib.input_shape import fits_model_dims, fits_model_modality


@dataclass(frozen=True)
class ModelChoice:
    id: str
    title: str
    details: str
    spatialDims: int = 3  # 2: a picture model, which also runs slice by slice on volumes; 3: needs a volume
    modality: str = "OT"  # the card's DICOM modality; a colour-photography model refuses grey volumes


@dataclass(frozen=True)
class ModelList:
    choices: list[ModelChoice] = field(default_factory=list)
    defaultId: str = ""
    problem: Optional[str] = None  # why the list could not be read, as one sentence

    def find(self, modelId: str) -> Optional[ModelChoice]:
        return next((choice for choice in self.choices if choice.id == modelId), None)

    def mismatchWithInput(self, modelId: str, dimensions: tuple[int, int, int],
                          components: int = 1) -> Optional[str]:
        """Why the model cannot take an input of these IJK ``dimensions`` and scalar ``components``, naming the
        models that can; else None.

        A picture (an ultrasound frame, a PNG) loads as a volume one slice thick, and a 3D model refuses it; a grey
        volume (a CT, an MR) given to a model of colour endoscopy pictures is a mix-up too. Saying so before Segment
        is clicked, with the models that do fit, saves a run that can only fail.
        """
        choice = self.find(modelId)
        if choice is None:
            return None
        if not fits_model_dims(choice.spatialDims, dimensions):
            return (f"'{choice.title}' needs a 3D volume, and the input is a single slice (a picture); "
                    f"{self._modelsToChoose(2)}")
        if not fits_model_modality(choice.modality, dimensions, components):
            return (f"'{choice.title}' segments colour photographs one at a time, and the input is a grey volume of "
                    f"{dimensions[2]} slices; {self._modelsToChoose(3)}")
        return None

    def _modelsToChoose(self, spatialDims: int) -> str:
        """The advice ending a refusal: the installed models of ``spatialDims``, or that there are none."""
        titles = [f"'{choice.title}'" for choice in self.choices if choice.spatialDims == spatialDims]
        if titles:
            return f"choose a {spatialDims}D model: {', '.join(titles)}."
        return f"no {spatialDims}D model is installed."


def formatTimings(timings: Mapping[str, Any]) -> str:
    """The card's measured seconds per case (``cpu_seconds_per_case``, ``gpu_seconds_per_case``) as one line."""
    parts = []
    for key, device in (("cpu_seconds_per_case", "CPU"), ("gpu_seconds_per_case", "GPU")):
        seconds = timings.get(key)
        if isinstance(seconds, (int, float)):
            where = timings.get(f"{key}_measured_on")
            parts.append(f"about {seconds:.1f} s on {device}" + (f" ({where})" if where else ""))
    return "Expected time per case: " + ("; ".join(parts) if parts else "not measured yet") + "."


def _formatDice(metrics: Mapping[str, Any]) -> Optional[str]:
    for subset in ("test", "validation"):
        figures = metrics.get(subset)
        if isinstance(figures, Mapping) and isinstance(figures.get("mean_dice"), (int, float)):
            return f"Mean Dice {figures['mean_dice']:.3f} on {figures.get('cases', '?')} {subset} cases."
    return None


def _formatLineage(lineage: Mapping[str, Any]) -> Optional[str]:
    """For a model made here by "Improve model" (finetune): its parent and what fine-tuning changed, measured."""
    if not lineage:
        return None
    parent = (lineage.get("parent") or {}).get("id", "another model")
    figures = lineage.get("figures") or {}
    before = (figures.get("before") or {}).get("mean_dice")
    after = (figures.get("after") or {}).get("mean_dice")
    cases, heldOut = len(lineage.get("cases") or []), len(lineage.get("held_out_cases") or [])
    text = f"Made on this computer from '{parent}' with {cases} corrected case{'s' if cases != 1 else ''}"
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        text += (f"; mean Dice on {heldOut} held-out corrected case{'s' if heldOut != 1 else ''}: {before:.3f} "
                 f"before, {after:.3f} after")
    return text + "."


def describeModel(card: Any) -> str:
    """Plain text for the panel's model label, from a ``ModelCard``."""
    licences = card.licenses
    lines = [
        card.description,
        f"Labels: {', '.join(label.name for label in card.labels)}.",
        f"Licence of the weights: {licences.get('weights', 'not stated')}. "
        f"Training data: {licences.get('training_data', 'not stated')}.",
        formatTimings(card.timings),
    ]
    dice = _formatDice(card.metrics)
    if dice:
        lines.append(dice)
    lineage = _formatLineage(getattr(card, "lineage", {}) or {})
    if lineage:
        lines.append(lineage)
    return "\n".join(lines)


def loadModelList(catalog: Optional[Any] = None) -> ModelList:
    """The catalog's models, or an empty list with the reason when the catalog cannot be read."""
    try:
        from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
    except ImportError as error:
        package = getattr(error, "name", None) or str(error)
        return ModelList(problem=f"The model list needs the Python package '{package}'; click Segment to install "
                                 "the required packages.")
    try:
        cards = (catalog or Catalog()).cards()
    except Exception as error:  # a broken model folder must not break the panel
        return ModelList(problem=f"The model catalog could not be read: {error}.")
    choices = [ModelChoice(card.id, card.title, describeModel(card), card.input.spatial_dims, card.modality)
               for card in cards]
    ids = [choice.id for choice in choices]
    default = DEFAULT_MODEL_ID if DEFAULT_MODEL_ID in ids else (ids[0] if ids else "")
    return ModelList(choices, default, None if choices else "No models were found in the model folders.")
