"""The model catalog: every ``*.card.json`` in the bundled models folder and in the user's model folders.

The search order is :func:`.resources.model_search_path`: bundled models, ``MOBILEUVIT_MODELS_PATH``, then the
per-user local models folder where ``finetune`` puts improved models, so they appear in the catalog (and the panel)
without any setting, and can never shadow a bundled model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from .card import CARD_SUFFIX, ModelCard, load_card
from .errors import ModelError, SegmentationError
from .resources import local_models_dir, model_search_path

DEFAULT_MODEL_ID = "hippocampus-mri"
LOCAL_SUFFIX = "-local-"
MAX_ID_LENGTH = 63  # card.schema.json: ^[a-z0-9][a-z0-9-]{1,62}$


class Catalog:
    """Cards by id. A later folder cannot shadow an id an earlier one defines (bundled models come first).

    Example::

        card = Catalog().get("hippocampus-mri")
    """

    def __init__(self, folders: Optional[Iterable[Path]] = None):
        self.folders = list(model_search_path() if folders is None else folders)
        self._cards: dict[str, ModelCard] = {}
        for folder in self.folders:
            for path in sorted(Path(folder).glob(f"*{CARD_SUFFIX}")):
                try:
                    card = load_card(path)
                except SegmentationError as error:
                    warnings.warn(f"skipping {path}: {error}", stacklevel=2)
                    continue
                self._cards.setdefault(card.id, card)

    def cards(self) -> list[ModelCard]:
        return [self._cards[key] for key in sorted(self._cards)]

    def ids(self) -> list[str]:
        return sorted(self._cards)

    def get(self, model: str) -> ModelCard:
        """A card by id, or by the path of a card file (a model trained with ``train``)."""
        if model in self._cards:
            return self._cards[model]
        if model.endswith(CARD_SUFFIX) or os.sep in model or "/" in model:
            path = Path(model)
            if not path.is_file():
                raise ModelError(f"model card {path} does not exist")
            return load_card(path)
        known = ", ".join(self.ids()) or "none"
        raise ModelError(f"unknown model id {model!r}; known models: {known}")


def model_files_exist(folder: Path, model_id: str) -> bool:
    """Whether ``folder`` already holds a card or weights named ``model_id`` (a new model must not replace them)."""
    return any((Path(folder) / f"{model_id}{suffix}").exists() for suffix in (CARD_SUFFIX, ".safetensors"))


def next_local_model_id(parent_id: str, folder: Optional[Path] = None, catalog: Optional[Catalog] = None) -> str:
    """``<parent>-local-<n>`` with the smallest ``n`` that no catalog model and no file in ``folder`` uses.

    A fine-tuned model of a fine-tuned model counts on from the original (``x-local-1`` gives ``x-local-2``), so the
    ids stay short and say which shipped model they descend from.
    """
    folder = Path(folder) if folder is not None else local_models_dir()
    taken = set((catalog or Catalog()).ids())
    base = parent_id.split(LOCAL_SUFFIX)[0]
    number = 1
    while True:
        tail = f"{LOCAL_SUFFIX}{number}"
        candidate = base[:MAX_ID_LENGTH - len(tail)].rstrip("-") + tail
        if candidate not in taken and not model_files_exist(folder, candidate):
            return candidate
        number += 1
