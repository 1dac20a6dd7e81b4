"""How much arithmetic a network does, how fast it runs, and how fast this machine can do dense convolutions.

The three numbers make latencies comparable across machines and architectures: a network's achieved FLOP rate
(FLOPs / latency) divided by the machine's dense-convolution rate says how well its operators use the CPU, separately
from how many operations it needs. Definitions shared by every benchmark in this folder:

* MACs = FLOPs / 2, FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass (it counts
  convolutions, matrix products and attention; norms, activations and element-wise ops count zero);
* latency = median of ``repeats`` forward passes after one warm-up, in eval mode under ``torch.inference_mode()``;
* dense-convolution rate = the best FLOPs / median time over a few large dense convolutions (kernel 3, padding 1).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# (channels, spatial size) of the dense probes: the same work at three balances of channels against voxels.
DENSE_PROBES = {3: ((32, 96), (64, 48), (128, 24)), 2: ((64, 256), (128, 128))}


def count_flops(network: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``network`` on ``inputs`` (multiply and add counted separately)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(inputs)
    return counter.get_total_flops()


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``run`` over ``repeats`` calls after one untimed warm-up (allocations, kernel choice)."""
    run()
    times = []
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def forward_latency(network: nn.Module, inputs: torch.Tensor, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of one forward pass, the network in eval mode and under ``torch.inference_mode()``."""
    network.eval()
    with torch.inference_mode():
        return median_seconds(lambda: network(inputs), repeats)


def dense_convolution_rate(spatial_dims: int, repeats: int,
                           probes: Sequence[tuple[int, int]] | None = None) -> dict:
    """This machine's dense-convolution FLOP rate in ``spatial_dims`` dimensions, at the current thread count.

    Each probe is a ``channels -> channels`` convolution, kernel 3, padding 1, on a ``1 x channels x size^dims`` map;
    the rate is the best probe's FLOPs / median time (FLOP/s), each probe's own rate reported beside it.
    """
    convolution = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
    results = []
    for channels, size in probes or DENSE_PROBES[spatial_dims]:
        layer = convolution(channels, channels, 3, padding=1)
        inputs = torch.randn(1, channels, *([size] * spatial_dims))
        flops = count_flops(layer, inputs)
        seconds, _ = forward_latency(layer, inputs, repeats)
        results.append({"channels": channels, "size": size, "flops": flops, "median_seconds": seconds,
                        "flop_per_second": flops / seconds})
    return {"flop_per_second": max(result["flop_per_second"] for result in results), "probes": results}
