"""The inference engine: one model loaded once, any number of images segmented onto their own voxel grids.

Steps for each image (each reported as a progress stage and timed):

1. **preparing**: checks (dimension, channels, NaN, constant), orientation to the card's, resampling to its
   spacing, intensity normalisation (:mod:`..preparation`); a colour picture for a grey 2D model becomes grey;
2. **inferring**: 3D sliding window with Gaussian blending, or 2D: a picture (or each slice of a volume) resized to
   the card's input size, predicted, and the logits resized back to its own pixel grid; AMP on CUDA;
3. **restoring**: probabilities resampled onto the oriented input grid, argmax (sigmoid > 0.5 for a single-logit
   model), axes permuted back, the input's geometry copied exactly;
4. **postprocessing**: largest component per class and hole filling, when switched on.

Optional (:class:`SegmentationOptions`): ``tta`` runs the network once more per mirror axis (:func:`tta_flip_axes`:
the axes the model was trained mirrored along) on the image flipped along it, in model space, and averages the
probabilities; ``uncertainty`` (or ``tta``) adds an uncertainty map on the input's exact grid (resampled like the
probabilities behind the label map), a confidence score per segment and a review list of uncertain regions
(definitions in :mod:`..confidence`); ``probabilities`` keeps one probability map per label on the same grid (channel
c of the softmax, or of (1 - p, p) for a single sigmoid logit, is label value c). With all off none of this runs and
nothing extra is kept in memory.

When CUDA runs out of memory during step 2, the run is retried with one window at a time, then on the CPU; each
fallback is said in a progress message and in the result's ``notes``, so the user learns why it was slower.

Cancellation is checked between windows; a cancelled run raises :class:`~..errors.Cancelled` before anything is
returned, so callers never see a partial result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
import torch

from ..card import ModelCard
from ..confidence import (
    ReviewItem,
    flip_disagreement,
    label_confidence,
    normalised_entropy,
    review_regions,
    scalar_map_to_original,
)
from ..errors import ModelError
from ..image_io import match_components
from ..input_checks import check_modality
from ..model_loading import load_network
from ..postprocessing import postprocess_labels
from ..preparation import prepare_image
from ..progress import CancelToken, ProgressCallback, StagedProgress, ignore_progress
from ..spatial import array_to_image
from .onnx_backend import with_requested_backend
from .predictor import slice_batch_probabilities, sliding_window_probabilities

STAGE_WEIGHTS = {"preparing": 0.05, "inferring": 0.85, "restoring": 0.05, "postprocessing": 0.05}


@dataclass(frozen=True)
class SegmentationOptions:
    """Per-run settings; ``None`` means "as the model card says"."""

    postprocess: Optional[bool] = None
    overlap: Optional[float] = None
    sw_batch_size: Optional[int] = None
    amp: bool = True
    uncertainty: bool = False  # uncertainty map, per-segment confidence and review list (no extra network pass)
    tta: bool = False  # test-time flips: 1 + one pass per mirror axis, probabilities averaged; implies the above
    probabilities: bool = False  # one probability map per label (the softmax or sigmoid the label map comes from)

    @property
    def assesses_confidence(self) -> bool:
        return self.uncertainty or self.tta


@dataclass
class SegmentationResult:
    """A run's label map, and with ``uncertainty``/``tta`` how sure the network was (see :mod:`..confidence`)."""

    labels: sitk.Image  # uint8 label map on the input's exact grid, values as in the card
    card: ModelCard
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run had to do differently (memory fallbacks)
    # float32 normalised entropy of the (flip-averaged) probabilities in [0, 1], on the labels' exact grid.
    uncertainty: Optional[sitk.Image] = None
    # float32 fraction of flip passes whose argmax differs from the consensus, same grid; only with ``tta``.
    disagreement: Optional[sitk.Image] = None
    # label value -> mean (1 - uncertainty) over its voxels; labels absent from ``labels`` are not in the dict.
    confidence: dict[int, float] = field(default_factory=dict)
    review: list[ReviewItem] = field(default_factory=list)  # most uncertain regions, rank 1 first
    # label value -> float32 probability in [0, 1] on the labels' exact grid (the (flip-averaged) softmax or sigmoid,
    # before post-processing); only with ``probabilities``.
    probabilities: dict[int, sitk.Image] = field(default_factory=dict)

    def present_labels(self) -> list[int]:
        return [int(value) for value in np.unique(sitk.GetArrayViewFromImage(self.labels)) if value != 0]


class Segmenter:
    """Segments images with one model card's network.

    Example::

        segmenter = Segmenter(Catalog().get("hippocampus-mri"), torch.device("cpu"))
        result = segmenter.segment(read_image("case.nii.gz"))
        write_image(result.labels, "case_labels.nii.gz")
    """

    def __init__(self, card: ModelCard, device: torch.device, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None):
        """``progress`` and ``cancel`` follow the weights download when the weights are fetched on first use."""
        if not card.is_segmenter:
            raise ModelError(f"model {card.id} is a {card.kind} network, not a segmenter: it reproduces its input and "
                             "is meant to start training another model (train --init-weights), so it cannot segment")
        started = time.perf_counter()
        self.card = card
        self.device = device
        network = load_network(card, device, progress=progress or ignore_progress, cancel=cancel)
        self.network = with_requested_backend(card, network, device)  # card's inference.backend
        self.load_seconds = time.perf_counter() - started

    def segment(self, image: sitk.Image, *, options: SegmentationOptions = SegmentationOptions(),
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                name: str = "the input") -> SegmentationResult:
        card, spec = self.card, self.card.input
        cancel = cancel or CancelToken()
        stages = StagedProgress(STAGE_WEIGHTS, progress)
        timings: dict[str, float] = {}

        clock = time.perf_counter()
        stages.report("preparing", 0.0, "checking and resampling the image")
        check_modality(image, card.modality, name)
        if spec.spatial_dims == 2:
            image = match_components(image, spec.channels)
        prepared = prepare_image(image, spec, name)
        timings["preparing"] = time.perf_counter() - clock
        cancel.raise_if_cancelled()

        clock = time.perf_counter()
        stages.report("inferring", 0.0, f"running {card.architecture} on {self.device.type}")
        on_fraction = lambda fraction: stages.report("inferring", fraction)  # noqa: E731
        notes: list[str] = []
        batch = options.sw_batch_size or (card.inference.sw_batch_size if spec.spatial_dims == 3 else 8)
        attempts = [(self.device, batch)]
        if self.device.type == "cuda":
            attempts += [(self.device, 1)] if batch > 1 else []
            attempts += [(torch.device("cpu"), batch)]
        for attempt, (device, batch) in enumerate(attempts):
            try:
                if options.tta:
                    probabilities, pass_labels = self._infer_with_flips(prepared.array, options, device, batch,
                                                                        on_fraction, cancel)
                else:
                    probabilities, pass_labels = self._infer(prepared.array, options, device, batch, on_fraction,
                                                             cancel), []
                break
            except torch.cuda.OutOfMemoryError:
                if attempt == len(attempts) - 1:
                    raise
                _release_cuda_memory()
                following_device = attempts[attempt + 1][0]
                note = (f"the GPU ran out of memory with {batch} window{'s' if batch > 1 else ''} at a time; "
                        + ("retrying one window at a time" if following_device.type == "cuda"
                           else "running on the CPU instead (slower)"))
                notes.append(note)
                stages.report("inferring", 0.0, note)
        timings["inferring"] = time.perf_counter() - clock
        cancel.raise_if_cancelled()

        clock = time.perf_counter()
        stages.report("restoring", 0.0, "mapping the result onto the input grid")
        space = prepared.space
        uncertainty = disagreement = None
        probability_maps: dict[int, sitk.Image] = {}
        if options.assesses_confidence or options.probabilities:
            oriented = space.probabilities_to_oriented_grid(probabilities)
            oriented_labels = oriented.argmax(0).astype(np.uint8)  # channel c is label value c
            if options.assesses_confidence:
                uncertainty = scalar_map_to_original(space, normalised_entropy(oriented), spec.spatial_dims)
            if options.probabilities:
                probability_maps = {label.value: scalar_map_to_original(space, oriented[label.value],
                                                                        spec.spatial_dims)
                                    for label in card.labels if label.value < oriented.shape[0]}
            del oriented
            if options.tta:
                consensus = probabilities.argmax(0).astype(np.uint8)  # on the model grid, like the passes
                fraction = flip_disagreement(pass_labels, consensus)[None]
                disagreement = scalar_map_to_original(space, space.probabilities_to_oriented_grid(fraction)[0],
                                                      spec.spatial_dims)
                del consensus, fraction, pass_labels
        else:
            oriented_labels = space.probabilities_to_oriented_grid(probabilities).argmax(0).astype(np.uint8)
        if spec.spatial_dims == 3:
            labels = space.labels_to_original(oriented_labels)
        else:
            labels = array_to_image(oriented_labels, space.original, sitk.sitkUInt8)
        timings["restoring"] = time.perf_counter() - clock
        cancel.raise_if_cancelled()

        clock = time.perf_counter()
        postprocessing = card.inference.postprocessing
        if options.postprocess is not False:
            stages.report("postprocessing", 0.0, "largest component and hole filling")
            labels = postprocess_labels(labels, [label.value for label in card.labels],
                                        keep_largest=postprocessing.largest_component,
                                        fill_holes=postprocessing.fill_holes)
        timings["postprocessing"] = time.perf_counter() - clock
        confidence: dict[int, float] = {}
        review: list[ReviewItem] = []
        if uncertainty is not None:
            clock = time.perf_counter()
            stages.report("postprocessing", 1.0, "scoring confidence and ranking uncertain regions")
            label_array = sitk.GetArrayViewFromImage(labels)
            confidence = label_confidence(sitk.GetArrayViewFromImage(uncertainty), label_array,
                                          [label.value for label in card.labels])
            review = review_regions(uncertainty, labels, {label.value: label.name for label in card.labels})
            timings["confidence"] = time.perf_counter() - clock
        stages.report("postprocessing", 1.0, "done")
        return SegmentationResult(labels=labels, card=card, device=str(device),
                                  timings={key: round(value, 3) for key, value in timings.items()}, notes=notes,
                                  uncertainty=uncertainty, disagreement=disagreement, confidence=confidence,
                                  review=review, probabilities=probability_maps)

    def _infer_with_flips(self, array: np.ndarray, options: SegmentationOptions, device: torch.device, batch: int,
                          on_fraction, cancel: CancelToken) -> tuple[np.ndarray, list[np.ndarray]]:
        """Probabilities averaged over the identity and a flip along each axis of :func:`tta_flip_axes` (model
        space), and each pass's argmax (for the disagreement map)."""
        flips = [None, *(axis + 1 for axis in tta_flip_axes(self.card))]  # array axes: (channels, x, y[, z])
        total: Optional[np.ndarray] = None
        pass_labels: list[np.ndarray] = []
        for index, axis in enumerate(flips):
            cancel.raise_if_cancelled()
            inputs = array if axis is None else np.ascontiguousarray(np.flip(array, axis))
            on_pass = lambda fraction, index=index: on_fraction((index + fraction) / len(flips))  # noqa: E731
            probabilities = self._infer(inputs, options, device, batch, on_pass, cancel)
            if axis is not None:
                probabilities = np.flip(probabilities, axis)  # (classes, x, y[, z]): the same axis index
            pass_labels.append(probabilities.argmax(0).astype(np.uint8))
            if total is None:
                total = np.array(probabilities, dtype=np.float32)
            else:
                total += probabilities
            del probabilities
        total /= np.float32(len(flips))
        return total, pass_labels

    def _infer(self, array: np.ndarray, options: SegmentationOptions, device: torch.device, batch: int,
               on_fraction, cancel: CancelToken) -> np.ndarray:
        """Class probabilities on the model-space grid, computed on ``device``, ``batch`` windows or slices at once."""
        spec = self.card.input
        network = self.network if device == self.device else self._network_on(device)
        if spec.spatial_dims == 3:
            return sliding_window_probabilities(
                network, array, spec.patch_size,
                overlap=options.overlap if options.overlap is not None else self.card.inference.overlap,
                sw_batch_size=batch, device=device, amp=options.amp, on_fraction=on_fraction, cancel=cancel)
        return slice_batch_probabilities(network, array, spec.patch_size, batch_size=batch, device=device,
                                         amp=options.amp, on_fraction=on_fraction, cancel=cancel)

    def _network_on(self, device: torch.device) -> torch.nn.Module:
        """The network loaded afresh on ``device`` for a fallback run (copying it from a GPU that is out of memory
        could fail again); the loaded one stays where it was for the next run."""
        return with_requested_backend(self.card, load_network(self.card, device), device)


def tta_flip_axes(card: ModelCard) -> tuple[int, ...]:
    """Spatial axes (0 = x in model space) to flip for test-time augmentation: those the model was trained to be
    mirror-invariant along (the card's ``training.config.augmentation.flip_axes``, as nnU-Net does), or every axis
    when the card does not record its augmentation. Flipping along an axis the model never saw mirrored (anterior
    and posterior hippocampus along y) would only add wrong passes."""
    augmentation = (card.training.get("config") or {}).get("augmentation") or {}
    recorded = augmentation.get("flip_axes")
    dims = card.input.spatial_dims
    if recorded is None:
        return tuple(range(dims))
    return tuple(sorted({int(axis) for axis in recorded if 0 <= int(axis) < dims}))


def _release_cuda_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
