"""ONNX export of a card's network, and an ONNX Runtime CPU backend that the sliding-window predictor calls like the
PyTorch network (a batch of windows in, logits out).

Export uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs only ``onnx``, exports in about a second,
and its graphs ran faster in ONNX Runtime than the dynamo exporter's on Mobile U-ViT. The batch axis is dynamic when
the exporter can trace it so; where it cannot (the 3D Mobile U-ViT's token reshapes hide the channel count from its
instance-norm export), the file has a fixed batch of one and :class:`OnnxRuntimeNetwork` feeds it window by window.

A card asks for ONNX Runtime with ``inference.backend: "onnxruntime"``. The engine then exports once into the user's
cache folder (never into the bundled, possibly read-only ``Resources``), keyed by the weights' sha256, and falls back
to PyTorch, with a logged reason, when ONNX Runtime is not installed, the device is not the CPU, or export fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..card import ModelCard
from ..image_io import atomic_output
from ..resources import cache_dir

logger = logging.getLogger(__name__)

OPSET = 17
EXPORT_VERSION = 1  # bump when the export procedure changes so cached files are made anew
INPUT_NAME, OUTPUT_NAME = "image", "logits"
BACKENDS = ("pytorch", "onnxruntime")

Predictor = Callable[[torch.Tensor], torch.Tensor]


def missing_onnx_packages() -> list[str]:
    """The optional packages export and the ONNX Runtime backend need that are not installed."""
    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


@contextlib.contextmanager
def _module_path(network: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Trace the plain module path in eval mode: the in-place fast kernels (``models.fast_ops``) are for eager use."""
    was_training, own_setting = network.training, vars(network).get("fast_inference")
    network.eval()
    if hasattr(network, "fast_inference"):
        network.fast_inference = False
    try:
        yield network
    finally:
        network.train(was_training)
        if own_setting is None:
            vars(network).pop("fast_inference", None)
        else:
            network.fast_inference = own_setting


def _export(network: torch.nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool) -> None:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings say nothing the user can act on
        torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes)


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """The TorchScript exporter dumps its whole graph on the process's standard output (file descriptor 1, from C++)
    when an export fails, whatever its verbosity; the dynamic-batch attempt may fail by design, so that is dropped."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {descriptor: os.dup(descriptor) for descriptor in (1, 2)}
    try:
        with open(os.devnull, "w") as null:
            for descriptor in saved:
                os.dup2(null.fileno(), descriptor)
            yield
    finally:
        for descriptor, copy in saved.items():
            os.dup2(copy, descriptor)
            os.close(copy)


def export_onnx(network: torch.nn.Module, channels: int, window: Sequence[int], path: Path) -> bool:
    """Write ``network`` as ONNX for inputs of shape (batch, ``channels``, *``window``); True if batch is dynamic.

    The file is checked with ``onnx.checker`` and written atomically (a failed export leaves nothing behind).
    """
    import onnx

    generator = torch.Generator().manual_seed(0)
    with _module_path(network), atomic_output(path) as temporary:
        try:
            with _native_output_silenced():
                _export(network, torch.randn(2, channels, *window, generator=generator), temporary, dynamic_batch=True)
            dynamic = True
        except torch.onnx.errors.OnnxExporterError:
            logger.info("dynamic-batch ONNX export failed for %s; exporting with a fixed batch of 1",
                        type(network).__name__)
            _export(network, torch.randn(1, channels, *window, generator=generator), temporary, dynamic_batch=False)
            dynamic = False
        onnx.checker.check_model(str(temporary))
    return dynamic


class OnnxRuntimeNetwork:
    """An ONNX Runtime CPU session with the torch network's interface: (batch, channels, *window) -> logits tensor.

    Threads follow ``torch.get_num_threads()`` (what ``--threads`` sets), so both backends use the same cores.
    """

    def __init__(self, path: Path, threads: Optional[int] = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; ORT's warnings about unused initialisers are noise here
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.window = tuple(model_input.shape[2:])
        batch = model_input.shape[0]
        self.fixed_batch: Optional[int] = batch if isinstance(batch, int) else None

    def _run(self, array: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: array})[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.window:
            raise ValueError(f"this ONNX model takes windows of {self.window}, got {tuple(x.shape[2:])}")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if self.fixed_batch is None:
            return torch.from_numpy(self._run(array))
        outputs = []
        for start in range(0, array.shape[0], self.fixed_batch):
            chunk = array[start:start + self.fixed_batch]
            count = chunk.shape[0]
            if count < self.fixed_batch:  # pad the last chunk; the padding's outputs are dropped
                chunk = np.concatenate([chunk, np.zeros((self.fixed_batch - count, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self._run(chunk)[:count])
        return torch.from_numpy(np.concatenate(outputs))


def cached_onnx_path(card: ModelCard) -> Path:
    """Where the card's exported network is kept: one file per weights sha256, network, window and exporter."""
    key = json.dumps({
        "weights_sha256": card.weights.sha256, "architecture": card.architecture,
        "config": card.architecture_config, "channels": card.input.channels, "window": list(card.input.patch_size),
        "opset": OPSET, "export_version": EXPORT_VERSION, "torch": torch.__version__,
    }, sort_keys=True)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{card.id}-{card.weights.sha256[:12]}-{digest}.onnx"


def onnx_for_card(card: ModelCard, network: torch.nn.Module) -> Path:
    """The card's network as ONNX, exported on first use into the cache folder."""
    path = cached_onnx_path(card)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(network, card.input.channels, card.input.patch_size, path)
    return path


def with_requested_backend(card: ModelCard, network: torch.nn.Module,
                           device: torch.device) -> Union[torch.nn.Module, OnnxRuntimeNetwork]:
    """What the predictor should call: ``network``, or an ONNX Runtime session when the card asks for one and it can
    run here. Never fails because of the backend: any reason not to use ONNX Runtime is logged and PyTorch runs."""
    if card.inference.backend != "onnxruntime":
        return network
    reason = None
    missing = missing_onnx_packages()
    if missing:
        reason = f"{' and '.join(missing)} not installed (pip install onnx onnxruntime)"
    elif device.type != "cpu":
        reason = f"the ONNX Runtime backend runs on the CPU only and the device is {device.type}"
    if reason is None:
        try:
            return OnnxRuntimeNetwork(onnx_for_card(card, network))
        except Exception as error:  # noqa: BLE001  (any export or session failure: PyTorch still gives the result)
            first_line = (str(error).splitlines() or [""])[0][:200]
            reason = f"ONNX export or the ONNX Runtime session failed ({type(error).__name__}: {first_line})"
    logger.warning("model %s asks for ONNX Runtime; using PyTorch because %s", card.id, reason)
    return network
