"""Architecture benchmark: our networks and MONAI's, side by side, on one CPU, in one run.

For each network: parameters, MACs (``torch.utils.flop_counter``, MACs = FLOPs / 2), median latency of one window
(2D 256x256, 3D 96^3), peak resident memory, achieved FLOP rate and its fraction of this machine's measured
dense-convolution rate, and the time to process the whole ``lung1_image.nrrd`` chest CT (512x512x48,
0.57x0.57x5 mm). Every network runs in its own fresh child process (``--threads`` threads), so its peak memory is its
own (``VmHWM``) and one network's allocations do not disturb the next. Definitions: ``benchmarks/flop_rate.py``.

Networks: ours from the model registry (Mobile U-ViT-S/L in 2D and 3D, SRSNet 2D, HyMamba; MobileUtr-S/L are the
same 2D networks under their earlier names, so they are listed once) and MONAI's (``benchmarks/peers.py``): UNet,
SegResNetDS (Auto3DSeg), DynUNet in nnU-Net's topology (TotalSegmentator), UNETR, Swin UNETR. 3D networks have 1 input
channel and 14 outputs (BTCV); 2D networks 3 input channels (a grey image repeated, as the 2D papers' loaders do)
and 1 output (binary). A network not registered (yet) is reported as not available and the run goes on.

Whole volume (``lung1``): 3D networks run MONAI's ``sliding_window_inference`` (96^3 windows, overlap 0.25,
Gaussian blending, sw_batch_size 1) on the volume resampled to 1.5x1.5x2.0 mm (195x195x120 voxels, 18 windows; the
BTCV spacing of the 3D papers); 2D networks run slice by slice (batch 1) on the 48 axial slices resized to 256x256.
Only the network work is timed (reading and resampling are not), median of ``--volume-repeats`` runs after one
warm-up window.

Usage (about 20 to 30 minutes on 2 threads, most of it HyMamba, Swin UNETR and DynUNet over the whole volume)::

    python benchmarks/benchmark_architectures.py --threads 2 --output benchmarks/results/architectures_cpu.json
    python tools/readme_tables.py   # the README quotes the JSON

Faster partial runs: ``--skip-volume``, ``--networks 'monai_*' hymamba`` (shell patterns; the Mobile U-ViT-S
reference of each dimensionality is always measured, the ratio column needs it), ``--merge`` (keep the other
networks' results already in the output file), ``--smoke`` (tiny windows and probes, checks the script in seconds;
its figures mean nothing). This is a benchmark, not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
sys.path.insert(0, str(REPOSITORY / "MobileUViTSegment"))
sys.path.insert(0, str(BENCHMARKS))

from architecture_report import REFERENCE, dims_key, markdown_table, summarise  # noqa: E402
from benchmark_cpu import peak_resident_megabytes  # noqa: E402

DATA = Path(os.environ.get("MOBILEUVIT_DATA", REPOSITORY.parent / "shared" / "data"))
DEFAULT_OUTPUT = BENCHMARKS / "results" / "architectures_cpu.json"
VOLUME_SPACING = (1.5, 1.5, 2.0)  # mm, x y z: BTCV's, as in the UNETR / Swin UNETR / Mobile U-ViT 3D pipelines
HU_WINDOW = (-175.0, 250.0)  # BTCV's intensity window, scaled to [0, 1]
OVERLAP = 0.25
SMOKE_PROBES = {3: ((8, 16),), 2: ((8, 32),)}


@dataclass(frozen=True)
class Network:
    """One row of the benchmark: what to build, in which dimensionality, with which channels."""

    name: str  # the row's name, matched by --networks
    spatial_dims: int
    architecture: str  # a registry name (ours) or a key of peers.PEERS
    in_channels: int
    out_channels: int
    peer: bool = False
    note: str = ""
    options: dict = field(default_factory=dict)  # extra keyword arguments of create_model


NETWORKS = [
    Network("mobileuvit_s_3d", 3, "mobileuvit_s", 1, 14),
    Network("mobileuvit_l_3d", 3, "mobileuvit_l", 1, 14),
    Network("hymamba", 3, "hymamba", 1, 14),
    Network("hymamba_small", 3, "hymamba_small", 1, 14),
    Network("monai_unet_3d", 3, "monai_unet", 1, 14, peer=True, note="MONAI tutorials"),
    Network("monai_segresnet_3d", 3, "monai_segresnet", 1, 14, peer=True, note="SegResNetDS, Auto3DSeg"),
    Network("monai_dynunet_3d", 3, "monai_dynunet", 1, 14, peer=True, note="nnU-Net topology, TotalSegmentator"),
    Network("monai_unetr_3d", 3, "monai_unetr", 1, 14, peer=True),
    Network("monai_swinunetr_3d", 3, "monai_swinunetr", 1, 14, peer=True),
    Network("mobileuvit_s_2d", 2, "mobileuvit_s", 3, 1, note="= mobileutr_s"),
    Network("mobileuvit_l_2d", 2, "mobileuvit_l", 3, 1, note="= mobileutr_l"),
    Network("srsnet_2d", 2, "srsnet", 3, 1, note="R encoder + S"),
    Network("monai_unet_2d", 2, "monai_unet", 3, 1, peer=True),
    Network("monai_segresnet_2d", 2, "monai_segresnet", 3, 1, peer=True, note="SegResNetDS"),
]
BY_NAME = {network.name: network for network in NETWORKS}


# ----------------------------------------------------------------------------------------- inside a child process

def build(network: Network, window: tuple[int, ...]):
    if network.peer:
        from peers import PEERS

        return PEERS[network.architecture](network.spatial_dims, network.in_channels, network.out_channels, window)
    from MobileUViTSegmentLib.models import create_model

    dims = {} if network.architecture.startswith("hymamba") else {"spatial_dims": network.spatial_dims}
    return create_model(network.architecture, **dims, in_channels=network.in_channels,
                        out_channels=network.out_channels, **network.options)


def measure_window(network: Network, window: tuple[int, ...], threads: int, repeats: int) -> dict:
    """Parameters, FLOPs, median latency and peak memory of one forward pass on one random window."""
    import torch
    from flop_rate import count_flops, forward_latency

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    try:
        model = build(network, window).eval()
    except Exception as error:  # not registered yet, or its factory refuses these arguments
        return {"not_available": f"{type(error).__name__}: {error}"}
    inputs = torch.randn(1, network.in_channels, *window)
    try:
        flops = count_flops(model, inputs)
        latency, times = forward_latency(model, inputs, repeats)
    except Exception as error:  # e.g. a window size the network does not take
        return {"error": f"{type(error).__name__}: {error}"}
    return {"parameters": sum(p.numel() for p in model.parameters()), "flops": flops, "macs": flops // 2,
            "median_seconds": round(latency, 4), "min_seconds": round(min(times), 4), "runs": len(times),
            "peak_rss_mb": round(peak_resident_megabytes(), 1)}


def prepare_volume(path: Path, spatial_dims: int, slice_size: int, in_channels: int):
    """The volume as the network input: 3D, resampled to ``VOLUME_SPACING`` (1, C, z, y, x); 2D, its axial slices
    resized to ``slice_size`` (slices, C, y, x). HU windowed to [0, 1] (the values do not change the timing)."""
    import SimpleITK as sitk
    import torch
    import torch.nn.functional as F

    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    if spatial_dims == 3:
        size = [max(1, round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), VOLUME_SPACING)]
        image = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), VOLUME_SPACING,
                              image.GetDirection(), HU_WINDOW[0], sitk.sitkFloat32)
    array = torch.from_numpy(sitk.GetArrayFromImage(image))  # z, y, x
    array = (array.clamp(*HU_WINDOW) - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0])
    if spatial_dims == 3:
        return array[None, None].expand(1, in_channels, *array.shape).contiguous()
    slices = F.interpolate(array[:, None], size=(slice_size, slice_size), mode="bilinear", align_corners=False)
    return slices.expand(-1, in_channels, -1, -1).contiguous()


def measure_volume(network: Network, window: tuple[int, ...], threads: int, repeats: int, path: Path) -> dict:
    """Seconds to run ``network`` over the whole volume (see the module docstring for the protocol)."""
    import statistics

    import torch
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(threads)
    try:
        model = build(network, window).eval()
    except Exception as error:
        return {"not_available": f"{type(error).__name__}: {error}"}
    inputs = prepare_volume(path, network.spatial_dims, window[0], network.in_channels)

    def whole_volume():
        if network.spatial_dims == 3:
            return sliding_window_inference(inputs, window, 1, model, overlap=OVERLAP, mode="gaussian")
        return [model(inputs[index:index + 1]) for index in range(inputs.shape[0])]

    times = []
    try:
        with torch.inference_mode():
            model(torch.zeros(1, network.in_channels, *window))  # warm-up window
            for _ in range(max(repeats, 1)):
                started = time.perf_counter()
                whole_volume()
                times.append(time.perf_counter() - started)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return {"median_seconds": round(statistics.median(times), 3), "runs": len(times),
            "input_shape": list(inputs.shape), "peak_rss_mb": round(peak_resident_megabytes(), 1)}


def measure_dense_rates(dims: list[int], threads: int, repeats: int, smoke: bool) -> dict:
    import torch
    from flop_rate import dense_convolution_rate

    torch.set_num_threads(threads)
    return {dims_key(d): dense_convolution_rate(d, repeats, SMOKE_PROBES[d] if smoke else None) for d in dims}


def run_child_task(task: dict) -> dict:
    """The entry point of a child process: one task described by a JSON dict."""
    if task["kind"] == "dense":
        return measure_dense_rates(task["dims"], task["threads"], task["repeats"], task["smoke"])
    network = BY_NAME[task["network"]]
    window = tuple(task["window"])
    if task["kind"] == "window":
        return measure_window(network, window, task["threads"], task["repeats"])
    return measure_volume(network, window, task["threads"], task["repeats"], Path(task["volume"]))


# ----------------------------------------------------------------------------------------------- in the parent

def in_child(task: dict) -> dict:
    """Runs ``task`` in a fresh Python process; a crash (out of memory, a segfault) becomes an error entry."""
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(task)],
                               capture_output=True, text=True)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"child process exited with {completed.returncode}: {tail}"}
    return json.loads(lines[-1])


def select(patterns: list[str] | None) -> list[Network]:
    """The networks matching any shell pattern, plus the reference network of each dimensionality selected."""
    if not patterns:
        return list(NETWORKS)
    chosen = {n.name for n in NETWORKS if any(fnmatch.fnmatchcase(n.name, p) for p in patterns)}
    if not chosen:
        raise SystemExit(f"no network matches {patterns}; known: {', '.join(BY_NAME)}")
    chosen |= {REFERENCE[dims_key(BY_NAME[name].spatial_dims)] for name in chosen}
    return [network for network in NETWORKS if network.name in chosen]


def machine_info(threads: int) -> dict:
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return {"cpu_model": model or platform.machine(), "cpus": os.cpu_count(), "threads": threads,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": metadata.version("torch"), "monai": metadata.version("monai")}


def run_benchmark(networks: list[Network], windows: dict[int, tuple[int, ...]], threads: int, repeats: int,
                  volume: Path | None, volume_repeats: int, smoke: bool = False, log=print) -> dict:
    """Measures ``networks`` (each task in its own process) and returns the summarised report."""
    volume_protocol = (f"{volume.name}, 3D: sliding window {'x'.join(map(str, windows.get(3, ())))}, overlap "
                       f"{OVERLAP}, Gaussian, on the volume resampled to {'x'.join(map(str, VOLUME_SPACING))} mm; "
                       f"2D: slice by slice at {windows.get(2, ('?',))[0]}^2; network time only, median of "
                       f"{volume_repeats}" if volume else "not measured")
    report = {"machine": machine_info(threads),
              "settings": {"repeats": repeats, "windows": {dims_key(d): list(w) for d, w in windows.items()},
                           "volume_protocol": volume_protocol, "smoke": smoke},
              "dense_rates": {}, "networks": {}}
    dims = sorted({network.spatial_dims for network in networks})
    report["dense_rates"] = in_child({"kind": "dense", "dims": dims, "threads": threads, "repeats": repeats,
                                      "smoke": smoke})
    log(f"dense-convolution rates: {json.dumps(report['dense_rates'])}")
    for network in networks:
        window = windows[network.spatial_dims]
        task = {"network": network.name, "window": list(window), "threads": threads}
        result = {"spatial_dims": network.spatial_dims, "window": list(window), "peer": network.peer,
                  "architecture": network.architecture, "note": network.note}
        result.update(in_child({**task, "kind": "window", "repeats": repeats}))
        if volume is not None and "median_seconds" in result:
            result["volume"] = in_child({**task, "kind": "volume", "repeats": volume_repeats, "volume": str(volume)})
        report["networks"][network.name] = result
        log(f"{network.name}: {json.dumps(result)}")
    return summarise(report)


def merge(previous: dict, report: dict) -> dict:
    """``report`` plus the networks of ``previous`` that it did not measure, in the canonical order."""
    networks = {**previous.get("networks", {}), **report["networks"]}
    report["networks"] = {name: networks[name] for name in [*BY_NAME, *networks] if name in networks}
    report["dense_rates"] = {**previous.get("dense_rates", {}), **report["dense_rates"]}
    return summarise(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per window (median)")
    parser.add_argument("--volume-repeats", type=int, default=1, help="timed whole-volume runs (median)")
    parser.add_argument("--skip-volume", action="store_true", help="skip the whole-volume timings (the long part)")
    parser.add_argument("--networks", nargs="+", metavar="PATTERN", help=f"shell patterns over {', '.join(BY_NAME)}")
    parser.add_argument("--window-3d", type=int, default=96)
    parser.add_argument("--window-2d", type=int, default=256)
    parser.add_argument("--volume", type=Path, default=DATA / "volumes" / "lung1_image.nrrd")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--merge", action="store_true", help="keep other networks' results from the output file")
    parser.add_argument("--smoke", action="store_true",
                        help="32^3 / 64^2 windows, tiny probes, 1 repeat, no volume: checks the script, not the speed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child_task(json.loads(args.child))))
        return 0
    if args.smoke:
        args.window_3d, args.window_2d, args.repeats, args.skip_volume = 32, 64, 1, True
    volume = None if args.skip_volume else args.volume
    if volume is not None and not volume.is_file():
        print(f"{volume} not found: whole-volume timings skipped (set MOBILEUVIT_DATA)")
        volume = None
    windows = {3: (args.window_3d,) * 3, 2: (args.window_2d,) * 2}
    report = run_benchmark(select(args.networks), windows, args.threads, args.repeats, volume, args.volume_repeats,
                           args.smoke)
    if args.merge and args.output.is_file():
        report = merge(json.loads(args.output.read_text(encoding="utf-8")), report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n" + markdown_table(report))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
