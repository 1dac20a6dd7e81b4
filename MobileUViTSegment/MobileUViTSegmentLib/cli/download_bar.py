"""The command line's download progress: a bar on stderr that appears only when weights are really downloaded."""

from __future__ import annotations

import sys
from typing import Optional

from tqdm import tqdm

from ..progress import Progress


class DownloadBar:
    """A progress bar on stderr fed by download progress events; it appears only once a download really starts."""

    def __init__(self) -> None:
        self.bar: Optional[tqdm] = None

    def __call__(self, update: Progress) -> None:
        if self.bar is None:
            self.bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="{desc} {bar} {percentage:3.0f}%")
        self.bar.set_description_str(update.message)
        self.bar.n = round(100 * update.fraction)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
