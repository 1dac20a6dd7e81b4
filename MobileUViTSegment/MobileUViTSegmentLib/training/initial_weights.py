"""Start a training run from given weights: a pretrained sub-network, or a whole network trained elsewhere.

SRSNet is trained in two stages: the reconstruction network R learns to reproduce its input (``srsnet_r``), then
the composite ``srsnet`` is trained with R frozen. The second stage starts from the first stage's weights file,
whose keys (``stem.conv.weight``) are R's own; inside the composite they live under ``reconstruction.``. So the
file is loaded *non-strictly* under a prefix, and the report says exactly what was and was not loaded, because a
silently ignored weights file is the worst failure a training run can have.

Only safetensors files are read (through :func:`..weights.load_state_dict`); pickled checkpoints are never
unpickled.

A model trained from other weights is only reproducible with the history of those weights, so the report carries the
file's sha256 and, when a model card beside the file names it with that sha256, the parent's id and its training
command (with the parent's own initial weights, recursively): the child's card then says every command that led
to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..card import CARD_SUFFIX
from ..errors import WeightsError
from ..weights import load_state_dict, sha256_of

LISTED = 5  # names quoted in error messages and summaries


@dataclass(frozen=True)
class InitialWeightsReport:
    """What :func:`load_initial_weights` did; recorded in the trained model's card."""

    file: str
    prefix: str
    loaded: int
    left_at_initialisation: tuple[str, ...]
    unused_in_file: tuple[str, ...]
    sha256: str = ""
    parent: Optional[dict] = None

    def to_dict(self) -> dict:
        record = {"file": self.file, "prefix": self.prefix, "loaded_tensors": self.loaded,
                  "left_at_initialisation": list(self.left_at_initialisation),
                  "unused_in_file": list(self.unused_in_file), "sha256": self.sha256}
        return {**record, "parent": self.parent} if self.parent else record

    def summary(self) -> str:
        text = f"initial weights {self.file}: {self.loaded} tensors loaded"
        if self.prefix:
            text += f" under {self.prefix!r}"
        text += f", {len(self.left_at_initialisation)} network tensors left at initialisation"
        if self.unused_in_file:
            text += f", {len(self.unused_in_file)} file tensors unused ({_some(self.unused_in_file)})"
        return text


def _some(names: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def _normalised_prefix(prefix: str) -> str:
    """``reconstruction`` and ``reconstruction.`` mean the same sub-module."""
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


def load_initial_weights(network: torch.nn.Module, path: str | Path, prefix: str = "") -> InitialWeightsReport:
    """Copy the tensors of the safetensors file ``path`` into ``network`` where ``prefix + key`` names one of its
    parameters or buffers.

    Tensors the file lacks keep their initialisation; file tensors the network lacks are ignored; both are listed
    in the report. A tensor whose shape differs from the network's, or a file of which no key matches at all
    (usually a wrong ``prefix``), raises :class:`~..errors.WeightsError`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"initial weights file {path} does not exist")
    prefix = _normalised_prefix(prefix)
    tensors = load_state_dict(path)
    target = network.state_dict()
    renamed = {prefix + key: value for key, value in tensors.items()}
    matched = {key: value for key, value in renamed.items() if key in target}
    if not matched:
        raise WeightsError(
            f"no tensor of {path.name} matches the network with prefix {prefix!r}: the file has "
            f"{_some(sorted(tensors))}, the network {_some(sorted(target))}; check --init-prefix")
    mismatched = [f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}"
                  for key, value in matched.items() if value.shape != target[key].shape]
    if mismatched:
        raise WeightsError(f"{len(mismatched)} tensors of {path.name} do not fit the network's shapes "
                           f"(file vs network): {_some(mismatched)}")
    network.load_state_dict({key: value.to(target[key].dtype) for key, value in matched.items()}, strict=False)
    return InitialWeightsReport(
        file=path.name, prefix=prefix, loaded=len(matched),
        left_at_initialisation=tuple(sorted(set(target) - set(matched))),
        unused_in_file=tuple(sorted(key[len(prefix):] for key in set(renamed) - set(matched))),
        **weights_provenance(path))


PARENT_TRAINING_KEYS = ("command", "working_directory", "dataset", "split_file", "epochs_run", "initial_weights")


def weights_provenance(path: str | Path) -> dict:
    """``sha256`` of the file and ``parent``: the card beside it that names this very file (same sha256), reduced to
    its id, version and how it was trained; no ``parent`` when no card vouches for the file."""
    path = Path(path)
    sha256 = sha256_of(path)
    provenance: dict = {"sha256": sha256}
    for card_path in sorted(path.parent.glob(f"*{CARD_SUFFIX}")):
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # an unreadable card vouches for nothing
        weights = card.get("weights") if isinstance(card, dict) else None
        if not isinstance(weights, dict) or weights.get("file") != path.name or weights.get("sha256") != sha256:
            continue
        training = card.get("training") if isinstance(card.get("training"), dict) else {}
        provenance["parent"] = {"id": card.get("id"), "version": card.get("version"), "card": card_path.name,
                                "training": {key: training[key] for key in PARENT_TRAINING_KEYS if key in training}}
        break
    return provenance
