"""Speed of one Mobile U-ViT-3D-S forward pass on CPU, against MONAI's SwinUNETR and the machine's dense-conv rate.

Measured interleaved in one process (each repeat times every candidate once, so a busy neighbour slows all alike),
medians over the repeats:

* ``ours``: ``create_model("mobileuvit_s", spatial_dims=3, in_channels=1, out_channels=14)``, eval, inference mode
  (the channels-last fast path of ``models/fast_ops.py``); ``ours_module_path``: the same model with
  ``fast_inference = False`` (the plain module path training uses), for reference;
* ``swinunetr``: ``monai.networks.nets.SwinUNETR(in_channels=1, out_channels=14, feature_size=48)``;
* three dense ``Conv3d`` probes (kernel 3, padding 1, no groups): 32->32 on 1x32x96^3, 64->64 on 1x64x48^3,
  128->128 on 1x128x24^3; the dense-convolution rate is the best of their FLOPs / median time.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``; the model's FLOPs are counted on the module path (the
network's own arithmetic; the fast path recomputes the first ConvUtr MLP layer and so executes ~4 % more).
Achieved rate = model FLOPs / median latency.

Usage::

    python benchmarks/profile_mobile_u_vit.py --threads 2 --repeats 5 [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MobileUViTSegment"))

from MobileUViTSegmentLib.models import create_model  # noqa: E402

SIZE = 96
PROBES = [(32, 96), (64, 48), (128, 24)]  # (channels, edge) of the dense Conv3d probes


def count_flops(function, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        function(*args)
    return counter.get_total_flops()


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def build_candidates() -> dict:
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(0)
    ours = create_model("mobileuvit_s", spatial_dims=3, in_channels=1, out_channels=14).eval()
    module_path = create_model("mobileuvit_s", spatial_dims=3, in_channels=1, out_channels=14).eval()
    module_path.load_state_dict(ours.state_dict())
    module_path.fast_inference = False
    volume = torch.randn(1, 1, SIZE, SIZE, SIZE)
    candidates = {
        "ours": (ours, volume),
        "ours_module_path": (module_path, volume),
        "swinunetr": (SwinUNETR(in_channels=1, out_channels=14, feature_size=48).eval(), volume),
    }
    for channels, edge in PROBES:
        probe = torch.nn.Conv3d(channels, channels, 3, padding=1).eval()
        candidates[f"dense_conv_{channels}@{edge}^3"] = (probe, torch.randn(1, channels, edge, edge, edge))
    return candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table for ours")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    candidates = build_candidates()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        flops = {name: count_flops(module, inputs) for name, (module, inputs) in candidates.items()}
        flops["ours"] = flops["ours_module_path"]  # the network's arithmetic, not the fast path's recomputation
        for module, inputs in candidates.values():
            module(inputs)  # warm-up
        for _ in range(args.repeats):
            for name, (module, inputs) in candidates.items():
                times[name].append(timed(module, inputs))
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            module, inputs = candidates["ours"]
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                module(inputs)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))

    median = {name: statistics.median(values) for name, values in times.items()}
    rate = {name: flops[name] / median[name] for name in candidates}
    dense_rate = max(rate[name] for name in candidates if name.startswith("dense_conv"))
    report = {
        "threads": args.threads,
        "repeats": args.repeats,
        "median_s": median,
        "all_s": times,
        "gflop": {name: value / 1e9 for name, value in flops.items()},
        "gflop_per_s": {name: value / 1e9 for name, value in rate.items()},
        "swinunetr_over_ours": median["swinunetr"] / median["ours"],
        "module_path_over_ours": median["ours_module_path"] / median["ours"],
        "ours_rate_over_dense_rate": rate["ours"] / dense_rate,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
