"""``segment`` on good and bad inputs: results where asked, and for bad input one line, a non-zero exit, no file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.resources import models_dir, sample_data_dir

MODULE_DIR = Path(__file__).resolve().parents[2] / "MobileUViTSegment"
SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"


def write(array: np.ndarray, path: Path, *, is_vector: bool = False) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=is_vector), str(path))
    return path


def run_failing(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code != 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {captured.err}"
    assert lines[0].startswith("mobileuvit-segment: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def test_one_input_to_a_seg_nrrd_with_named_segments_on_the_input_grid(tmp_path, capsys):
    output = tmp_path / "result.seg.nrrd"
    assert main(["segment", str(SAMPLE), "-o", str(output)]) == 0
    segmentation = slicerio.read_segmentation(str(output))
    assert [segment["name"] for segment in segmentation["segments"]] == ["anterior hippocampus",
                                                                          "posterior hippocampus"]
    assert segmentation["segments"][0]["terminology"]["type"][1] == "5366008"
    image = sitk.ReadImage(str(SAMPLE))
    assert segmentation["voxels"].shape == image.GetSize()
    expected = np.eye(4)
    expected[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    expected[:3, 3] = image.GetOrigin()
    assert np.allclose(segmentation["ijkToLPS"], expected)
    assert "anterior hippocampus" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_one_input_to_a_label_map(tmp_path, suffix):
    output = tmp_path / f"labels{suffix}"
    assert main(["segment", str(SAMPLE), "-o", str(output), "--quiet"]) == 0
    labels = sitk.ReadImage(str(output))
    image = sitk.ReadImage(str(SAMPLE))
    assert labels.GetSize() == image.GetSize() and labels.GetDirection() == image.GetDirection()
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) == {0, 1, 2}


def test_a_folder_of_inputs_goes_to_a_folder_in_the_chosen_format(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(SAMPLE, inputs / "a.nii.gz")
    shutil.copy(SAMPLE, inputs / "b.nii.gz")
    assert main(["segment", str(inputs), "-o", str(tmp_path / "out"), "--format", "nii.gz", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nii.gz", "b.nii.gz"]


def test_the_module_runs_as_a_program_and_fails_with_exit_code_2(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(MODULE_DIR)}
    completed = subprocess.run([sys.executable, "-m", "MobileUViTSegmentLib", "segment", str(tmp_path / "no.nii.gz"),
                                "-o", str(tmp_path / "out.nii.gz")], capture_output=True, text=True,
                               env=environment, timeout=300)
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"mobileuvit-segment: error: input {tmp_path / 'no.nii.gz'} does not exist"
    assert not (tmp_path / "out.nii.gz").exists()


# ------------------------------------------------------------------------------------------------- bad inputs


def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input with a fragment of the message it must produce."""
    rng = np.random.default_rng(0)
    random_bytes = folder / "random.nii.gz"
    random_bytes.write_bytes(rng.bytes(4096))
    empty = folder / "empty.nrrd"
    empty.write_bytes(b"")
    nan = rng.normal(size=(32, 32, 32)).astype(np.float32)
    nan[3, 3, 3] = np.nan
    four_d = sitk.JoinSeries([sitk.ReadImage(str(SAMPLE))] * 2)
    four_d_path = folder / "four_d.nii.gz"
    sitk.WriteImage(four_d, str(four_d_path))
    return {
        "missing": (folder / "missing.nii.gz", "does not exist"),
        "random bytes": (random_bytes, "cannot be read as an image"),
        "empty file": (empty, "empty file"),
        "4D": (four_d_path, "4D"),
        "RGB": (write(rng.integers(0, 255, (20, 30, 40, 3)).astype(np.uint8), folder / "rgb.nrrd", is_vector=True),
                "RGB"),
        "constant": (write(np.full((32, 32, 32), 7, np.int16), folder / "constant.nrrd"), "constant"),
        "NaN": (write(nan, folder / "nan.nrrd"), "NaN"),
        "2D slice": (write(rng.integers(0, 255, (40, 50)).astype(np.uint8), folder / "slice.png"), "2D slice"),
    }


@pytest.mark.parametrize("case", ["missing", "random bytes", "empty file", "4D", "RGB", "constant", "NaN",
                                  "2D slice"])
def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path, capsys, case):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path, fragment = bad_inputs(inputs)[case]
    output = tmp_path / "out.seg.nrrd"
    message = run_failing(capsys, "segment", str(path), "-o", str(output))
    assert fragment in message
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]  # no temporary files left either


def test_unknown_model_id_is_refused_before_anything_runs(tmp_path, capsys):
    message = run_failing(capsys, "segment", str(SAMPLE), "-o", str(tmp_path / "x.seg.nrrd"), "--model", "nope")
    assert "unknown model id 'nope'" in message and DEFAULT_MODEL_ID in message
    assert list(tmp_path.iterdir()) == []


def test_weights_with_a_wrong_sha256_are_refused_and_nothing_is_written(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    for name in (f"{DEFAULT_MODEL_ID}.card.json", f"{DEFAULT_MODEL_ID}.safetensors"):
        shutil.copy(models_dir() / name, models / name)
    weights = models / f"{DEFAULT_MODEL_ID}.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01
    weights.write_bytes(bytes(data))
    output = tmp_path / "x.seg.nrrd"
    message = run_failing(capsys, "segment", str(SAMPLE), "-o", str(output), "--model",
                          str(models / f"{DEFAULT_MODEL_ID}.card.json"))
    assert "sha256" in message and not output.exists()


def test_an_input_is_never_overwritten(tmp_path, capsys):
    target = tmp_path / "case.nii.gz"
    shutil.copy(SAMPLE, target)
    before = target.read_bytes()
    message = run_failing(capsys, "segment", str(target), "-o", str(target))
    assert "is one of the inputs" in message
    assert target.read_bytes() == before


def test_an_unknown_output_format_is_refused(tmp_path, capsys):
    message = run_failing(capsys, "segment", str(SAMPLE), "-o", str(tmp_path / "out.txt"))
    assert "unknown output format" in message


def test_a_batch_continues_past_a_bad_input_and_reports_it(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(SAMPLE, inputs / "good.nii.gz")
    write(np.zeros((32, 32, 32), np.int16), inputs / "flat.nrrd")
    code = main(["segment", str(inputs), "-o", str(tmp_path / "out"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "constant" in captured.err and "1 of 2 inputs failed" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.seg.nrrd"]
