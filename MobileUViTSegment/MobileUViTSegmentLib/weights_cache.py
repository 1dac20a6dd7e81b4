"""Weights that are not bundled: downloaded by URL into the per-user cache, or imported from a file at offline sites.

Why a cache and not the models folder: the bundled ``Resources`` folder may be read-only (inside a Slicer
installation) and must never hold a half-written file. A file enters the cache only after its size and sha256 match
the card, and only by a rename, so a cached file is either complete and verified or absent. A download cut off by the
network keeps its partial file (``<file>.part``) and the next attempt resumes it with an HTTP Range request; bytes that
do not hash to the card's sha256 are deleted, never resumed. A machine that already holds the weights (beside the card
or in the cache) never touches the network. Runs started together (several ``segment`` processes, the panel's worker
beside a command line) download one at a time under a lock (:mod:`.file_lock`): the first downloads, the others
wait and then find the verified file, so no two processes ever write the same partial file.

Cache layout: ``<cache>/weights/<sha256>/<file>``, so two versions of a model with the same file name live side by
side and a card can only ever find the exact bytes it names.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from .card import ModelCard, WeightsSpec
from .errors import Cancelled, WeightsError
from .file_lock import exclusive_lock
from .image_io import atomic_output
from .progress import CancelToken, Progress, ProgressCallback, ignore_progress
from .resources import cache_dir
from .weights import sha256_of, verify_weights

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30.0
USER_AGENT = "mobileuvit-segment (weights download)"
STAGE = "downloading weights"


def weights_cache_dir() -> Path:
    return cache_dir() / "weights"


def cached_weights_path(spec: WeightsSpec) -> Path:
    return weights_cache_dir() / spec.sha256 / spec.file


def partial_path(spec: WeightsSpec) -> Path:
    target = cached_weights_path(spec)
    return target.with_name(target.name + ".part")


def find_weights(card: ModelCard) -> Optional[Path]:
    """The card's weights file if this machine has it (beside the card first, then in the cache), else None."""
    for candidate in (card.weights_path, cached_weights_path(card.weights)):
        if candidate.is_file():
            return candidate
    return None


def ensure_weights(card: ModelCard, progress: ProgressCallback = ignore_progress,
                   cancel: Optional[CancelToken] = None, allow_download: bool = True) -> Path:
    """The verified weights file of ``card``, downloading it first when it is missing and the card names a URL."""
    path = find_weights(card)
    if path is not None:
        verify_weights(path, card.weights)
        return path
    if card.weights.url is None:
        raise WeightsError(f"weights file {card.weights_path} is missing and model {card.id} names no URL to "
                           f"download it from; if you have the file, run: mobileuvit-segment weights import "
                           f"{card.id} FILE")
    if not allow_download:
        raise WeightsError(f"weights of model {card.id} are not on this machine and downloading is switched "
                           f"off; download {card.weights.url} elsewhere and run: mobileuvit-segment weights "
                           f"import {card.id} FILE")
    return download_weights(card.weights, progress=progress, cancel=cancel)  # verified before it enters the cache


def download_weights(spec: WeightsSpec, url: Optional[str] = None, progress: ProgressCallback = ignore_progress,
                     cancel: Optional[CancelToken] = None, timeout: float = TIMEOUT_SECONDS) -> Path:
    """Download ``url`` (default: the card's) into the cache, resuming a partial file; returns the verified file.

    Raises :class:`WeightsError` with what to do next: when the server cannot be reached or fails, when it serves a
    file of another size than the card's, when the connection breaks (the partial file is kept: run again to resume),
    or when the complete file's sha256 differs from the card's (the file is deleted). A cancel keeps the partial file.
    """
    url = url or spec.url
    if not url or not url.startswith(("https://", "http://")):
        raise WeightsError(f"cannot download weights {spec.file} from {url!r}: only http(s) URLs are followed")
    target = cached_weights_path(spec)
    if target.is_file():
        verify_weights(target, spec)
        return target
    cancel = cancel or CancelToken()
    partial = partial_path(spec)

    def waiting() -> None:
        progress(Progress(STAGE, 0.0, f"waiting for another process downloading {spec.file}"))

    with exclusive_lock(partial.with_name(spec.file + ".lock"), cancel, waiting):
        if target.is_file():  # the process we waited for downloaded and verified it
            verify_weights(target, spec)
            return target
        return _download_locked(url, spec, target, partial, progress, cancel, timeout)


def _download_locked(url: str, spec: WeightsSpec, target: Path, partial: Path, progress: ProgressCallback,
                     cancel: CancelToken, timeout: float) -> Path:
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.is_file() else 0
    if have > spec.size:
        partial.unlink()
        have = 0
    if have < spec.size:
        have = _fetch(url, spec, partial, have, progress, cancel, timeout)
    if have < spec.size:
        raise WeightsError(f"download of {url} stopped at {have:,} of {spec.size:,} bytes; the part is kept in "
                           f"{partial.parent}, run the same command again to resume")
    actual = sha256_of(partial)
    if actual != spec.sha256:
        partial.unlink()
        raise WeightsError(f"{url} gave a file whose sha256 ({actual[:12]}...) is not the card's "
                           f"({spec.sha256[:12]}...): it is corrupted or another file; it was deleted and nothing "
                           "was cached")
    os.replace(partial, target)
    progress(Progress(STAGE, 1.0, f"{spec.file} verified"))
    return target


def _fetch(url: str, spec: WeightsSpec, partial: Path, have: int, progress: ProgressCallback, cancel: CancelToken,
           timeout: float) -> int:
    """Append the bytes after ``have`` to ``partial``; returns how many bytes the partial file holds afterwards."""
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        request = urllib.request.Request(url, headers=headers)  # only http(s): the caller checked the scheme
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # the server's file ends before our part does: it is shorter than the card's file
            partial.unlink(missing_ok=True)
            raise WeightsError(f"{url} holds fewer than {have:,} bytes but the card says {spec.size:,}: it is not "
                               "this model's weights file; nothing was cached") from error
        raise WeightsError(f"downloading {url} failed: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(f"cannot download {url}: {reason}; on an offline machine download the file elsewhere "
                           "and use: mobileuvit-segment weights import MODEL FILE") from error
    with response:
        if have and response.status != 206:  # the server ignored the range: start again from the first byte
            have = 0
        declared = response.headers.get("Content-Length")
        if declared is not None and have + int(declared) != spec.size:
            partial.unlink(missing_ok=True)
            raise WeightsError(f"{url} serves {have + int(declared):,} bytes but the card says {spec.size:,}: it is "
                               "not this model's weights file; nothing was cached")
        with open(partial, "ab" if have else "wb") as stream:
            try:
                while have < spec.size:
                    if cancel.cancelled:
                        raise Cancelled(f"download of {spec.file} cancelled at {have:,} of {spec.size:,} bytes; "
                                        "the part is kept and the next run resumes it")
                    chunk = response.read(min(CHUNK_BYTES, spec.size - have))
                    if not chunk:
                        break
                    stream.write(chunk)
                    have += len(chunk)
                    progress(Progress(STAGE, have / spec.size,
                                      f"{have / 1e6:.1f} of {spec.size / 1e6:.1f} MB of {spec.file}"))
            except (OSError, http.client.HTTPException):
                pass  # a broken connection: keep what arrived, the caller reports where it stopped
    return have


def import_weights(card: ModelCard, source: Path) -> Path:
    """Copy a weights file obtained elsewhere into the cache, after checking it is exactly the card's file."""
    if not source.is_file():
        raise WeightsError(f"{source} is not a file")
    verify_weights(source, card.weights)
    target = cached_weights_path(card.weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as temporary:
        shutil.copyfile(source, temporary)
    verify_weights(target, card.weights)
    return target


def clear_weights_cache() -> tuple[int, int]:
    """Delete every downloaded or imported weights file (complete or partial); returns (files, bytes) removed.

    Only the cache's ``weights`` folder is touched: bundled models and a user's own model folders never are.
    """
    root = weights_cache_dir()
    if not root.is_dir():
        return 0, 0
    files = [path for path in root.rglob("*") if path.is_file()]
    size = sum(path.stat().st_size for path in files)
    shutil.rmtree(root)
    return len(files), size
