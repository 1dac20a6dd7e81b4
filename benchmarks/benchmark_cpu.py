"""CPU benchmark: what `segment` costs on real inputs, and how our network compares with the peers' networks.

Measured in one run, on the same machine and thread count:

1. ``segment`` as a user runs it (a fresh process: Python start, imports, model load, reading, inference,
   writing), wall time, on the bundled hippocampus case and on ``lung1_image.nrrd`` (512x512x48 chest CT);
2. inference alone (the engine's ``inferring`` stage, model already loaded) on the same inputs;
3. one forward pass on a 96^3 window (the UNETR/SwinUNETR standard) and on the hippocampus model's 48x64x48 window,
   for our Mobile U-ViT-3D-S and MONAI's UNet, UNETR and SwinUNETR built for the same 3 classes: parameters,
   median latency, peak memory (each network in its own process, so peak RSS is its own), and the ratio of each
   peer's latency to ours.

Usage::

    python benchmarks/benchmark_cpu.py --threads 2 --output benchmarks/results/cpu.json

This is a benchmark, not a test: it asserts nothing and takes several minutes. Run it on an otherwise idle
machine; the README quotes its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
MODULE_DIR = REPOSITORY / "MobileUViTSegment"
sys.path.insert(0, str(MODULE_DIR))

DATA = Path(os.environ.get("MOBILEUVIT_DATA", REPOSITORY.parent / "shared" / "data"))
NETWORKS = ["mobileuvit_s", "monai_unet", "monai_unetr", "monai_swinunetr"]
WINDOWS = {"96^3": (96, 96, 96), "48x64x48": (48, 64, 48)}


def build_network(name: str, window: tuple[int, int, int]):
    from monai.networks.nets import UNETR, SwinUNETR, UNet

    from MobileUViTSegmentLib.models import create_model

    if name == "mobileuvit_s":
        return create_model("mobileuvit_s", spatial_dims=3, in_channels=1, out_channels=3)
    if name == "monai_unet":  # MONAI's basic residual UNet, as in its tutorials
        return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 32, 64, 128, 256),
                    strides=(2, 2, 2, 2), num_res_units=2, norm="instance")
    if name == "monai_unetr":  # the BTCV configuration of the UNETR paper
        return UNETR(in_channels=1, out_channels=3, img_size=window, feature_size=16, hidden_size=768,
                     mlp_dim=3072, num_heads=12)
    if name == "monai_swinunetr":  # the BTCV configuration of the Swin UNETR paper
        return SwinUNETR(in_channels=1, out_channels=3, feature_size=48)
    raise ValueError(name)


def supports(name: str, window: tuple[int, int, int]) -> bool:
    # SwinUNETR needs every size divisible by 32; UNETR by its 16-voxel patches.
    if name == "monai_swinunetr":
        return all(size % 32 == 0 for size in window)
    return all(size % 16 == 0 for size in window)


def measure_window(name: str, window: tuple[int, int, int], threads: int, repeats: int) -> dict:
    """Runs inside a child process: forward passes of one network on one window."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = build_network(name, window).eval()
    inputs = torch.randn(1, 1, *window)
    with torch.inference_mode():
        network(inputs)  # warm-up (allocations, kernel selection)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            network(inputs)
            times.append(time.perf_counter() - started)
    return {"parameters": sum(p.numel() for p in network.parameters()),
            "median_seconds": round(statistics.median(times), 4), "min_seconds": round(min(times), 4),
            "peak_rss_mb": round(peak_resident_megabytes(), 1)}


def peak_resident_megabytes() -> float:
    """This process's own peak resident memory.

    Linux keeps ``ru_maxrss`` across ``exec``, so a child started by a large parent would report the parent's peak;
    ``VmHWM`` belongs to the new address space and does not.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if platform.system() == "Darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def child(arguments: list[str]) -> dict:
    completed = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def time_segment_process(image: Path, threads: int, repeats: int) -> dict:
    """Wall time of the whole command a user types, in fresh processes."""
    environment = {**os.environ, "PYTHONPATH": str(MODULE_DIR)}
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "MobileUViTSegmentLib", "segment", str(image), "-o",
                            str(Path(folder) / "labels.nii.gz"), "--threads", str(threads), "--device", "cpu",
                            "--quiet"], check=True, env=environment)
            times.append(time.perf_counter() - started)
    return {"median_seconds": round(statistics.median(times), 3), "runs": repeats}


def time_inference(image: Path, threads: int, repeats: int) -> dict:
    import torch

    from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
    from MobileUViTSegmentLib.image_io import read_image
    from MobileUViTSegmentLib.inference.engine import Segmenter

    torch.set_num_threads(threads)
    segmenter = Segmenter(Catalog().get(DEFAULT_MODEL_ID), torch.device("cpu"))
    volume = read_image(image)
    segmenter.segment(volume)  # warm-up
    stages = [segmenter.segment(volume).timings for _ in range(repeats)]
    return {stage: round(statistics.median(t[stage] for t in stages), 3) for stage in stages[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--volume-repeats", type=int, default=2, help="repeats for the whole-volume timings")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "benchmarks" / "results" / "cpu.json")
    parser.add_argument("--measure-window", nargs=2, metavar=("NETWORK", "WINDOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_window:
        name, window = args.measure_window
        print(json.dumps(measure_window(name, WINDOWS[window], args.threads, args.repeats)))
        return 0

    from MobileUViTSegmentLib.resources import sample_data_dir

    inputs = {"hippocampus_046 (36x49x38, 1 mm)": sample_data_dir() / "hippocampus_046.nii.gz",
              "lung1_image.nrrd (512x512x48, 0.57x0.57x5 mm)": DATA / "volumes" / "lung1_image.nrrd"}
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "threads": args.threads, "python": platform.python_version()},
              "segment": {}, "windows": {}}
    for label, path in inputs.items():
        if not path.is_file():
            print(f"skipping {label}: {path} not found")
            continue
        report["segment"][label] = {"whole_process": time_segment_process(path, args.threads, args.volume_repeats),
                                    "engine_stages": time_inference(path, args.threads, args.volume_repeats)}
        print(f"segment {label}: {report['segment'][label]}", flush=True)
    for window_name, window in WINDOWS.items():
        results = {}
        for name in NETWORKS:
            if not supports(name, window):
                results[name] = {"skipped": "input size not supported by this network"}
                continue
            results[name] = child(["--measure-window", name, window_name, "--threads", str(args.threads),
                                   "--repeats", str(args.repeats)])
            print(f"{window_name} {name}: {results[name]}", flush=True)
        ours = results["mobileuvit_s"]["median_seconds"]
        for result in results.values():
            if "median_seconds" in result:
                result["latency_ratio_to_ours"] = round(result["median_seconds"] / ours, 2)
        report["windows"][window_name] = results
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_tables(report)
    return 0


def print_tables(report: dict) -> None:
    print("\n| input | `segment`, whole process (s) | inference alone (s) |\n|---|---|---|")
    for label, result in report["segment"].items():
        print(f"| {label} | {result['whole_process']['median_seconds']:.2f} | "
              f"{result['engine_stages']['inferring']:.2f} |")
    for window_name, results in report["windows"].items():
        print(f"\n| network ({window_name} window, {report['machine']['threads']} threads) | parameters | "
              "latency (s) | peer / ours | peak memory (MB) |\n|---|---|---|---|---|")
        for name, result in results.items():
            if "skipped" in result:
                print(f"| {name} | - | - | - | {result['skipped']} |")
                continue
            print(f"| {name} | {result['parameters'] / 1e6:.2f} M | {result['median_seconds']:.3f} | "
                  f"{result['latency_ratio_to_ours']:.1f}x | {result['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
