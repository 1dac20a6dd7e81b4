"""Under load: one worker serves 200 segmentations with bounded memory, and four command-line runs at once all finish
with correct results.

A Slicer session keeps one worker for hours, so a leak of even a few megabytes a run would end in a frozen machine;
and sites script cohorts with several processes at once, which must not collide on temporary or output files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MobileUViTSegmentLib.resources import sample_data_dir
from MobileUViTSegmentLib.worker_client import WorkerClient, default_command

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"
RUNS = 200
WARM_UP = 20  # the allocator and PyTorch's caches settle in the first runs: the window growth is compared against
MODULE_DIR = Path(__file__).resolve().parents[2] / "MobileUViTSegment"


def resident_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads resident memory from /proc (Linux)")
def test_two_hundred_runs_through_one_worker_keep_its_memory_within_five_percent(tmp_path: Path, record_property):
    worker = WorkerClient(command=[*default_command(), "--threads", "1"])
    outputs = [tmp_path / "a.seg.nrrd", tmp_path / "b.seg.nrrd"]  # alternate: every run replaces a result
    resident = []
    try:
        for index in range(RUNS):
            worker.send({"type": "segment", "id": f"r{index}", "input": str(SAMPLE),
                         "output": str(outputs[index % 2]), "model": "hippocampus-mri", "device": "cpu"})
            assert worker.wait_for(f"r{index}", timeout=120)["event"] == "done"
            resident.append(resident_megabytes(worker.process.pid))
    finally:
        worker.shutdown()
    # Peaks, not single samples: the allocator hands memory back and takes it again between runs (tens of MB either
    # way), while a leak raises the peak of the last runs above the peak of the first ones.
    baseline, final = max(resident[:WARM_UP]), max(resident[-WARM_UP:])
    growth = (final - baseline) / baseline
    for name, value in (("worker_runs", RUNS), ("worker_window_runs", WARM_UP),
                        ("worker_rss_mb_first_runs", round(baseline)), ("worker_rss_mb_last_runs", round(final)),
                        ("worker_rss_mb_max", round(max(resident))),
                        ("worker_rss_growth_percent", round(100 * growth, 1))):
        record_property(name, value)  # tools/reliability_report.py puts these in the README
    assert growth < 0.05, f"peak resident memory grew {100 * growth:.1f} % from the first {WARM_UP} runs " \
                          f"({baseline:.0f} MB) to the last {WARM_UP} ({final:.0f} MB)"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.seg.nrrd", "b.seg.nrrd"]  # no temporary left


def test_four_command_line_runs_at_once_all_complete_correctly(tmp_path: Path, record_property):
    reference = tmp_path / "reference.nii.gz"
    subprocess.run([sys.executable, "-m", "MobileUViTSegmentLib", "segment", str(SAMPLE), "-o", str(reference),
                    "--threads", "1", "--quiet"], cwd=MODULE_DIR, check=True, timeout=300)
    outputs = [tmp_path / f"run{index}.nii.gz" for index in range(4)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, "-m", "MobileUViTSegmentLib", "segment", str(SAMPLE), "-o",
                                   str(output), "--threads", "1", "--quiet"], cwd=MODULE_DIR, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for output in outputs]
    for process in processes:
        _, error = process.communicate(timeout=300)
        assert process.returncode == 0, error
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(reference)))
    for output in outputs:
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(output))), expected)
    record_property("concurrent_runs_identical", len(outputs))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["reference.nii.gz", *(output.name for output in outputs)])
