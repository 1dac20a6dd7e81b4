"""CUDA out of memory: the engine retries with one window at a time, then on the CPU, says so, and gives the labels
a CPU run gives.

No GPU is needed: the engine is told its device is CUDA and every CUDA attempt raises PyTorch's own
``torch.cuda.OutOfMemoryError``, which is exactly what a full GPU raises; the CPU attempt then runs for real.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.inference.engine import Segmenter
from MobileUViTSegmentLib.resources import sample_data_dir
from MobileUViTSegmentLib.worker import Worker

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"


@pytest.fixture
def out_of_memory_gpu(monkeypatch) -> list[tuple[str, int]]:
    """Segmenters believe they run on CUDA, where every attempt fails; returns the attempts made."""
    attempts: list[tuple[str, int]] = []
    real_infer = Segmenter._infer

    def infer(self, array, options, device, batch, on_fraction, cancel):
        attempts.append((device.type, batch))
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_infer(self, array, options, device, batch, on_fraction, cancel)

    real_init = Segmenter.__init__

    def init(self, card, device, progress=None, cancel=None):
        real_init(self, card, torch.device("cpu"), progress, cancel)
        self.device = torch.device("cuda")

    monkeypatch.setattr(Segmenter, "_infer", infer)
    monkeypatch.setattr(Segmenter, "__init__", init)
    return attempts


def cpu_labels() -> np.ndarray:
    segmenter = Segmenter(Catalog().get(DEFAULT_MODEL_ID), torch.device("cpu"))
    return sitk.GetArrayFromImage(segmenter.segment(sitk.ReadImage(str(SAMPLE))).labels)


def test_out_of_memory_retries_smaller_then_on_the_cpu_and_says_so(out_of_memory_gpu):
    expected = cpu_labels()
    out_of_memory_gpu.clear()
    segmenter = Segmenter(Catalog().get(DEFAULT_MODEL_ID), torch.device("cuda"))
    messages = []
    result = segmenter.segment(sitk.ReadImage(str(SAMPLE)), progress=lambda update: messages.append(update.message))
    batch = segmenter.card.inference.sw_batch_size
    assert out_of_memory_gpu == [("cuda", batch), ("cuda", 1), ("cpu", batch)]
    assert result.device == "cpu"
    assert [note.split(";")[1].strip() for note in result.notes] == [
        "retrying one window at a time", "running on the CPU instead (slower)"]
    assert all(note in messages for note in result.notes)  # the panel's status line shows them as they happen
    assert np.array_equal(sitk.GetArrayFromImage(result.labels), expected)


def test_the_worker_reports_the_fallback_in_its_done_event(out_of_memory_gpu, tmp_path, monkeypatch):
    monkeypatch.setattr("MobileUViTSegmentLib.worker.resolve_device", lambda name: torch.device("cuda"))
    output = io.StringIO()
    Worker(output).segment({"id": "r1", "input": str(SAMPLE), "output": str(tmp_path / "labels.nrrd"),
                            "model": DEFAULT_MODEL_ID, "device": "cuda"})
    done = json.loads(output.getvalue().splitlines()[-1])
    assert done["event"] == "done" and done["device"] == "cpu"
    assert len(done["notes"]) == 2 and "out of memory" in done["notes"][0]
