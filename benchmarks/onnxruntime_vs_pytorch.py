"""PyTorch vs the ONNX Runtime backend on one sliding window, interleaved in one process (fair under a busy machine).

    python benchmarks/onnxruntime_vs_pytorch.py --threads 2 --repeats 7 [--cases hippocampus btcv96]

Prints, per case, the median seconds per call of a batch of ``--batch`` windows for each backend, their ratio and the
max abs logit difference. Cases: the shipped hippocampus-mri model (its 48x64x48 window, real weights) and a
Mobile U-ViT-3D-S with 14 classes on a 96^3 window (random weights).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MobileUViTSegment"))

from MobileUViTSegmentLib.catalog import Catalog  # noqa: E402
from MobileUViTSegmentLib.inference.onnx_backend import OnnxRuntimeNetwork, export_onnx  # noqa: E402
from MobileUViTSegmentLib.model_loading import load_network  # noqa: E402
from MobileUViTSegmentLib.models import create_model  # noqa: E402


def cases(which: list[str]):
    if "hippocampus" in which:
        card = Catalog().get("hippocampus-mri")
        yield "hippocampus-mri 48x64x48", load_network(card, torch.device("cpu")), 1, tuple(card.input.patch_size)
    if "btcv96" in which:
        network = create_model("mobileuvit_s", spatial_dims=3).eval()
        yield "mobileuvit_s 3D 96^3, 14 classes", network, 1, (96, 96, 96)


def compare(name: str, network: torch.nn.Module, channels: int, window: tuple[int, ...], args, folder: Path) -> str:
    path = folder / "network.onnx"
    started = time.perf_counter()
    dynamic = export_onnx(network, channels, window, path)
    export_seconds = time.perf_counter() - started
    runtime = OnnxRuntimeNetwork(path, threads=args.threads)
    sample = torch.randn(args.batch, channels, *window, generator=torch.Generator().manual_seed(0))

    def run_torch() -> torch.Tensor:
        with torch.inference_mode():
            return network(sample).contiguous()

    backends = {"pytorch": run_torch, "onnxruntime": lambda: runtime(sample)}
    outputs = {key: call() for key, call in backends.items()}  # warm-up, and the outputs compared
    times: dict[str, list[float]] = {key: [] for key in backends}
    for _ in range(args.repeats):
        for key, call in backends.items():
            clock = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - clock)
    medians = {key: statistics.median(values) for key, values in times.items()}
    difference = float((outputs["onnxruntime"] - outputs["pytorch"]).abs().max())
    return (f"{name}: batch {args.batch}, {args.threads} threads, export {export_seconds:.1f} s "
            f"({'dynamic' if dynamic else 'fixed'} batch); pytorch {medians['pytorch']:.3f} s, onnxruntime "
            f"{medians['onnxruntime']:.3f} s (ORT/PyTorch {medians['onnxruntime'] / medians['pytorch']:.2f}); "
            f"max abs logit difference {difference:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2, help="windows per call (the cards' sw_batch_size)")
    parser.add_argument("--cases", nargs="+", choices=["hippocampus", "btcv96"], default=["hippocampus", "btcv96"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp())
    for name, network, channels, window in cases(args.cases):
        print(compare(name, network, channels, window, args, folder), flush=True)


if __name__ == "__main__":
    main()
