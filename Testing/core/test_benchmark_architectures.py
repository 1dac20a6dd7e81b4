"""The architecture benchmark's measuring and reporting logic, on tiny inputs (its figures are not checked here).

The benchmark itself takes half an hour; these tests prove in seconds that what it measures and writes is what its
columns claim: MACs are half the counted FLOPs, the dense rate is the best probe, a missing network becomes a row that
says why, the ratio and rate columns are the stated quotients, and the README renders from the results JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from torch import nn

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))
sys.path.insert(0, str(REPOSITORY / "tools"))

import architecture_report  # noqa: E402
import benchmark_architectures as benchmark  # noqa: E402
import flop_rate  # noqa: E402
import peers  # noqa: E402


def test_flop_count_of_a_convolution_is_the_textbook_formula():
    layer = nn.Conv2d(2, 4, 3, padding=1, bias=False)
    flops = flop_rate.count_flops(layer, torch.randn(1, 2, 8, 8))
    assert flops == 2 * (4 * 2 * 3 * 3) * (8 * 8)  # 2 FLOPs per multiply-accumulate, one per weight per pixel


def test_dense_rate_is_the_best_of_its_probes():
    rate = flop_rate.dense_convolution_rate(3, repeats=1, probes=((4, 8), (8, 4)))
    assert [probe["flops"] for probe in rate["probes"]] == [2 * 4 * 4 * 27 * 8**3, 2 * 8 * 8 * 27 * 4**3]
    assert rate["flop_per_second"] == max(probe["flop_per_second"] for probe in rate["probes"]) > 0


def test_window_measurement_reports_size_compute_latency_and_memory():
    network = benchmark.BY_NAME["monai_unet_2d"]
    result = benchmark.measure_window(network, (32, 32), threads=1, repeats=2)
    expected_parameters = sum(p.numel() for p in benchmark.build(network, (32, 32)).parameters())
    assert result["parameters"] == expected_parameters
    assert result["macs"] == result["flops"] // 2 > 0
    assert result["runs"] == 2 and 0 < result["min_seconds"] <= result["median_seconds"]
    assert result["peak_rss_mb"] > 0


def test_a_network_that_is_not_registered_is_reported_and_not_fatal():
    missing = benchmark.Network("not_yet", 3, "no_such_architecture", 1, 14)
    result = benchmark.measure_window(missing, (16, 16, 16), threads=1, repeats=1)
    assert "no_such_architecture" in result["not_available"]


def test_every_network_of_the_issue_is_listed_once_with_the_mobile_u_vit_references():
    names = [network.name for network in benchmark.NETWORKS]
    assert len(names) == len(set(names))
    for architecture in ("mobileuvit_s", "mobileuvit_l", "srsnet", "hymamba", "hymamba_small", *peers.PEERS):
        assert architecture in {network.architecture for network in benchmark.NETWORKS}
    assert set(architecture_report.REFERENCE.values()) <= set(names)
    assert all(n.out_channels == 14 for n in benchmark.NETWORKS if n.spatial_dims == 3)
    assert all(n.out_channels == 1 for n in benchmark.NETWORKS if n.spatial_dims == 2)


def test_selecting_networks_keeps_the_reference_the_ratio_needs():
    chosen = [network.name for network in benchmark.select(["monai_unet_3d", "srsnet*"])]
    assert chosen == ["mobileuvit_s_3d", "monai_unet_3d", "mobileuvit_s_2d", "srsnet_2d"]


def test_nnunet_like_dynunet_has_six_stages_at_96_and_fewer_on_small_windows():
    assert peers.dynunet_strides((96, 96, 96)) == [1, 2, 2, 2, 2, 2]
    assert peers.dynunet_strides((16, 16, 16)) == [1, 2, 2, 2]


@pytest.fixture()
def small_ct(tmp_path: Path) -> Path:
    """A 24x20x3 CT-like volume at 0.75x0.75x5 mm: resampled to 1.5x1.5x2 mm it is 12x10x8 voxels."""
    image = sitk.GetImageFromArray(torch.linspace(-1000, 1000, 3 * 20 * 24).reshape(3, 20, 24).numpy())
    image.SetSpacing((0.75, 0.75, 5.0))
    path = tmp_path / "small_ct.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def test_whole_volume_3d_protocol_runs_a_sliding_window_on_the_resampled_volume(small_ct: Path):
    network = benchmark.BY_NAME["monai_unet_3d"]
    result = benchmark.measure_volume(network, (32, 32, 32), threads=1, repeats=1, path=small_ct)
    assert result["input_shape"] == [1, 1, 8, 10, 12]  # z, y, x at 2.0, 1.5, 1.5 mm
    assert result["median_seconds"] > 0 and result["runs"] == 1


def test_whole_volume_2d_protocol_runs_every_slice_resized(small_ct: Path):
    network = benchmark.BY_NAME["monai_unet_2d"]
    result = benchmark.measure_volume(network, (32, 32), threads=1, repeats=1, path=small_ct)
    assert result["input_shape"] == [3, 3, 32, 32]  # 3 slices, grey repeated to 3 channels, 32x32
    assert result["median_seconds"] > 0


def synthetic_report() -> dict:
    def measured(dims: int, seconds: float, flops: float) -> dict:
        return {"spatial_dims": dims, "window": [8] * dims, "peer": False, "note": "", "parameters": 2_000_000,
                "flops": flops, "macs": flops // 2, "median_seconds": seconds, "peak_rss_mb": 500.0}

    return {"machine": {"cpu_model": "Test CPU", "cpus": 2, "threads": 2, "torch": "2.x", "monai": "1.x"},
            "settings": {"repeats": 5, "volume_protocol": "not measured"},
            "dense_rates": {"3d": {"flop_per_second": 100e9}, "2d": {"flop_per_second": 50e9}},
            "networks": {"mobileuvit_s_3d": measured(3, 2.0, 40e9),
                         "monai_unet_3d": {**measured(3, 0.5, 20e9), "volume": {"median_seconds": 12.5}},
                         "hymamba": {"spatial_dims": 3, "window": [8, 8, 8], "not_available": "KeyError: hymamba"},
                         "monai_unet_2d": measured(2, 0.1, 1e9)}}


def test_summary_divides_by_the_reference_latency_and_the_dense_rate_of_the_same_dims():
    report = architecture_report.summarise(synthetic_report())
    unet = report["networks"]["monai_unet_3d"]
    assert unet["latency_ratio_to_reference"] == 0.25  # 0.5 s / 2.0 s
    assert unet["gflop_per_second"] == 40.0  # 20 GFLOP / 0.5 s
    assert unet["fraction_of_dense_rate"] == 0.4  # 40 / 100 GFLOP/s
    unet_2d = report["networks"]["monai_unet_2d"]
    assert unet_2d["fraction_of_dense_rate"] == 0.2  # 10 / 50 GFLOP/s, the 2D rate
    assert unet_2d["latency_ratio_to_reference"] is None  # no 2D reference measured: no ratio rather than a wrong one


def test_table_has_a_row_per_network_with_the_stated_columns():
    report = architecture_report.summarise(synthetic_report())
    table = architecture_report.markdown_table(report).splitlines()
    assert len(table) == 2 + len(report["networks"])
    unet = next(line for line in table if line.startswith("| monai_unet_3d "))
    assert [cell.strip() for cell in unet.strip("|").split("|")] == [
        "monai_unet_3d", "3D, 8x8x8", "2.00", "10.0", "0.500", "0.25x", "500", "40.0", "40 %", "12.5"]
    assert "not available: KeyError: hymamba" in next(line for line in table if line.startswith("| hymamba "))


def test_targets_sentence_says_met_or_by_how_much_missed():
    report = synthetic_report()
    report["networks"]["monai_swinunetr_3d"] = {**report["networks"]["monai_unet_3d"], "median_seconds": 30.0}
    sentence = architecture_report.describe_targets(architecture_report.summarise(report))
    assert "15.0x faster than SwinUNETR" in sentence and "(target 8x: met)" in sentence  # 30 s / 2 s
    assert "20 % of the dense-convolution FLOP rate (target 50 %: missed by 2.5x)" in sentence  # 20 of 100 GFLOP/s
    del report["networks"]["monai_swinunetr_3d"]
    assert architecture_report.describe_targets(report).startswith("Targets not evaluated")


def test_readme_block_renders_from_the_results_json(tmp_path: Path):
    import readme_tables

    results = tmp_path / "architectures.json"
    results.write_text(json.dumps(architecture_report.summarise(synthetic_report())), encoding="utf-8")
    block = readme_tables.architecture_table(results)
    assert block.startswith("Measured by `python benchmarks/benchmark_architectures.py --threads 2` on Test CPU")
    assert "3D 100 GFLOP/s" in block and "| monai_unet_2d |" in block
    assert "Run `python benchmarks/benchmark_architectures.py`" in readme_tables.architecture_table(tmp_path / "no")


@pytest.mark.slow
def test_smoke_run_of_the_command_writes_json_and_prints_the_table(tmp_path: Path, capsys):
    output = tmp_path / "architectures.json"
    assert benchmark.main(["--smoke", "--threads", "1", "--networks", "monai_unet_2d", "--output", str(output)]) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    assert list(report["networks"]) == ["mobileuvit_s_2d", "monai_unet_2d"]
    assert report["networks"]["monai_unet_2d"]["latency_ratio_to_reference"] > 0
    assert "| monai_unet_2d " in capsys.readouterr().out
