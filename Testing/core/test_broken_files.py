"""A corpus of broken and degenerate files, and random headers: ``segment`` answers each with one clear line and a
non-zero exit, writes nothing, and never allocates what a header merely claims.

The hand-made corpus covers the failures users report (truncated downloads, headers from broken converters,
impossible geometry, absurd sizes); the property-based test lets hypothesis write NRRD headers with any size, spacing,
type and data length and checks the same contract on every one: success on the input's grid, or one line and nothing.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.resources import sample_data_dir

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"
HEADER = """NRRD0004
type: {type}
dimension: 3
space: left-posterior-superior
sizes: {sizes}
space directions: {directions}
kinds: domain domain domain
endian: little
encoding: raw
space origin: (0,0,0)

"""


def nrrd(path: Path, *, sizes: str = "20 20 20", directions: str = "(1,0,0) (0,1,0) (0,0,1)",
         type_: str = "float", data: bytes | None = None) -> Path:
    if data is None:
        data = np.random.default_rng(0).normal(size=8000).astype(np.float32).tobytes()
    path.write_bytes(HEADER.format(type=type_, sizes=sizes, directions=directions).encode() + data)
    return path


def corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each broken file with a fragment of the sentence it must produce."""
    good = nrrd(folder / "good.nrrd")
    good_gz = folder / "good.nii.gz"
    shutil.copy(SAMPLE, good_gz)
    compressed = good_gz.read_bytes()
    files = {
        "truncated NRRD header": (folder / "header.nrrd", "cannot be read as an image"),
        "truncated NRRD data": (folder / "data.nrrd", "cannot be read as an image"),
        "truncated NIfTI download": (folder / "half.nii.gz", "truncated or corrupted gzip"),
        "NIfTI header only": (folder / "header_only.nii.gz", "cannot be read as an image"),
        "zero spacing": (nrrd(folder / "zero.nrrd", directions="(0,0,0) (0,1,0) (0,0,1)"), "spacing"),
        "NaN spacing": (nrrd(folder / "nan.nrrd", directions="(nan,0,0) (0,1,0) (0,0,1)"), "cannot be read"),
        "absurd spacing (found by hypothesis)": (nrrd(folder / "far.nrrd", directions="(1,0,0) (0,1,0) (0,0,1e30)"),
                                                 "implausible voxel spacing"),
        "huge declared size": (nrrd(folder / "huge.nrrd", sizes="100000 100000 100000"), "of memory available"),
        "one voxel": (nrrd(folder / "one.nrrd", sizes="1 1 1", data=b"\0\0\0\0"), "a single voxel or a line"),
        "1x1xN line": (nrrd(folder / "line.nrrd", sizes="1 1 50", data=bytes(200)), "a single voxel or a line"),
        "text file named .nii.gz": (folder / "notes.nii.gz", "cannot be read as an image"),
    }
    files["truncated NRRD header"][0].write_bytes(good.read_bytes()[:60])
    files["truncated NRRD data"][0].write_bytes(good.read_bytes()[:-5000])
    files["truncated NIfTI download"][0].write_bytes(compressed[: len(compressed) // 2])
    files["NIfTI header only"][0].write_bytes(gzip.compress(gzip.decompress(compressed)[:100]))
    files["text file named .nii.gz"][0].write_text("patient notes, not an image\n", encoding="utf-8")
    return files


CASES = ["truncated NRRD header", "truncated NRRD data", "truncated NIfTI download", "NIfTI header only",
         "zero spacing", "NaN spacing", "absurd spacing (found by hypothesis)", "huge declared size", "one voxel",
         "1x1xN line", "text file named .nii.gz"]


def failing(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_each_broken_file_gets_one_line_and_nothing_is_written(tmp_path: Path, capsys, record_property, case: str):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path, fragment = corpus(inputs)[case]
    before = sorted(inputs.iterdir())
    message = failing(capsys, "segment", str(path), "-o", str(tmp_path / "out.seg.nrrd"), "--threads", "1")
    assert fragment in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"] and sorted(inputs.iterdir()) == before
    record_property("broken_file", case)


def test_unicode_and_spaces_in_paths_are_ordinary_paths(tmp_path: Path):
    folder = tmp_path / "Патient 01 · çà"
    folder.mkdir()
    source = folder / "T1 image ü.nii.gz"
    shutil.copy(SAMPLE, source)
    output = folder / "résultat final.seg.nrrd"
    assert main(["segment", str(source), "-o", str(output), "--threads", "1", "--quiet"]) == 0
    assert output.is_file()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into read-only folders")
def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path: Path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert "not writable" in failing(capsys, "segment", str(SAMPLE), "-o", str(folder / "out.nii.gz"))
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)



def test_an_unwritable_output_folder_is_refused_even_where_the_tests_run_as_root(tmp_path: Path, capsys,
                                                                                  monkeypatch):
    """The same refusal, with the permission answer the operating system gives a normal user simulated."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == folder else real_access(path, mode))
    assert "not writable" in failing(capsys, "segment", str(SAMPLE), "-o", str(folder / "out.nii.gz"))
    assert list(folder.iterdir()) == []

SPACINGS = st.sampled_from(["1", "0", "-1", "0.5", "nan", "inf", "1e-30", "1e30", "-0"])
ANY_HEADER = st.fixed_dictionaries({
    "sizes": st.tuples(*[st.integers(min_value=0, max_value=40)] * 3),
    "spacing": st.tuples(SPACINGS, SPACINGS, SPACINGS),
    "type": st.sampled_from(["float", "short", "uchar", "double", "int"]),
    "data_fraction": st.sampled_from([0.0, 0.5, 1.0, 1.5]),
})
# Random but well-formed headers too, so that the success half of the contract (a result on the input's own grid,
# whatever the spacing) is exercised as often as the refusals.
VALID_HEADER = st.fixed_dictionaries({
    "sizes": st.tuples(*[st.integers(min_value=2, max_value=40)] * 3),
    "spacing": st.tuples(*[st.sampled_from(["0.4", "0.8", "1", "1.5", "3", "5"])] * 3),
    "type": st.sampled_from(["float", "short", "uchar", "double", "int"]),
    "data_fraction": st.just(1.0),
})
HEADERS = st.one_of(ANY_HEADER, VALID_HEADER)
BYTES = {"float": 4, "short": 2, "uchar": 1, "double": 8, "int": 4}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADERS)
def test_any_nrrd_header_gives_a_result_on_its_grid_or_one_line_and_nothing(tmp_path: Path, capsys, record_property,
                                                                            header: dict):
    case = tmp_path / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    sizes, spacing = header["sizes"], header["spacing"]
    count = int(np.prod(sizes)) * BYTES[header["type"]]
    data = np.random.default_rng(0).integers(0, 255, int(count * header["data_fraction"]), dtype=np.uint8)
    directions = " ".join(f"({','.join(spacing[i] if j == i else '0' for j in range(3))})" for i in range(3))
    path = nrrd(case / "random.nrrd", sizes=" ".join(map(str, sizes)), directions=directions,
                type_=header["type"], data=data.tobytes())
    output = case / "out.nii.gz"
    code = main(["segment", str(path), "-o", str(output), "--threads", "1", "--quiet"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    record_property("random_header", "segmented" if code == 0 else "refused")  # tools/reliability_report.py counts
    if code == 0:
        result, source = sitk.ReadImage(str(output)), sitk.ReadImage(str(path))
        assert result.GetSize() == source.GetSize()
        assert np.allclose(result.GetSpacing(), source.GetSpacing())
        assert np.allclose(result.GetDirection(), source.GetDirection(), atol=1e-6)
    else:
        assert code == 2 and len([line for line in captured.err.splitlines() if line.strip()]) == 1, captured.err
        assert sorted(p.name for p in case.iterdir()) == ["random.nrrd"]
