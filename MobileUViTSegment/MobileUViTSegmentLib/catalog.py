"""The model catalog: every ``*.card.json`` in the bundled models folder and in the user's model folders."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from .card import CARD_SUFFIX, ModelCard, load_card
from .errors import ModelError, SegmentationError
from .resources import model_search_path

DEFAULT_MODEL_ID = "hippocampus-mri"


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
