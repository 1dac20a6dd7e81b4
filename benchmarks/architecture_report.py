"""Derived figures and the table of the architecture benchmark, from its raw measurements.

Kept apart from the measuring script and free of torch, so the README generator (``tools/readme_tables.py``) renders
the very same table from the results JSON without importing a deep-learning stack.
"""

from __future__ import annotations

# The network each row's latency is divided by: Mobile U-ViT-S in the row's dimensionality.
REFERENCE = {"2d": "mobileuvit_s_2d", "3d": "mobileuvit_s_3d"}
# The targets for Mobile U-ViT-3D-S per 96^3 window: this many times faster than SwinUNETR in the same run,
# and at least this fraction of the machine's dense-convolution FLOP rate.
SPEEDUP_TARGET = ("monai_swinunetr_3d", 8.0)
DENSE_FRACTION_TARGET = 0.5
COLUMNS = ("network", "dims, window", "params (M)", "GMACs", "latency (s)", "/ ours", "peak (MB)", "GFLOP/s",
           "of dense rate", "lung1 (s)")


def dims_key(spatial_dims: int) -> str:
    return f"{spatial_dims}d"


def summarise(report: dict) -> dict:
    """Adds to every measured network its FLOP rate, that rate as a fraction of the machine's dense-convolution rate
    in the same dimensionality, and its latency divided by the reference network's; returns ``report``."""
    networks = report["networks"]
    for result in networks.values():
        if "median_seconds" not in result:
            continue
        dims = dims_key(result["spatial_dims"])
        rate = result["flops"] / result["median_seconds"]
        result["gflop_per_second"] = round(rate / 1e9, 2)
        dense = report.get("dense_rates", {}).get(dims, {}).get("flop_per_second")
        result["fraction_of_dense_rate"] = round(rate / dense, 3) if dense else None
        reference = networks.get(REFERENCE[dims], {}).get("median_seconds")
        result["latency_ratio_to_reference"] = round(result["median_seconds"] / reference, 2) if reference else None
    return report


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _latency(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def table_rows(report: dict) -> list[list[str]]:
    """One row per network in the report's order; a network that could not be built or run says why."""
    rows = []
    for name, result in report["networks"].items():
        window = "x".join(str(size) for size in result["window"])
        dims = f"{result['spatial_dims']}D, {window}"
        label = f"{name} ({result['note']})" if result.get("note") else name
        if "median_seconds" not in result:
            reason = result.get("not_available") or result.get("error") or "not measured"
            rows.append([label, dims, f"not available: {reason}"] + [""] * (len(COLUMNS) - 3))
            continue
        volume = result.get("volume", {})
        ratio = result.get("latency_ratio_to_reference")
        fraction = result.get("fraction_of_dense_rate")
        rows.append([
            label, dims, f"{result['parameters'] / 1e6:.2f}", f"{result['macs'] / 1e9:.1f}",
            _latency(result["median_seconds"]), "" if ratio is None else f"{ratio:.2f}x",
            f"{result['peak_rss_mb']:.0f}", _number(result.get("gflop_per_second"), 1),
            "" if fraction is None else f"{100 * fraction:.0f} %",
            _latency(volume["median_seconds"]) if "median_seconds" in volume else volume.get("error", ""),
        ])
    return rows


def markdown_table(report: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table_rows(report)]
    return "\n".join(lines)


def describe_run(report: dict) -> str:
    """The sentence above the table: machine, software, protocol and dense rates, so the figures can be judged."""
    machine, settings = report["machine"], report["settings"]
    rates = ", ".join(f"{dims.upper()} {values['flop_per_second'] / 1e9:.0f} GFLOP/s"
                      for dims, values in sorted(report.get("dense_rates", {}).items()))
    volume = settings.get("volume_protocol", "not measured")
    warning = "**Smoke run: tiny windows and probes, figures meaningless.** " if settings.get("smoke") else ""
    return (f"{warning}Measured by `python benchmarks/benchmark_architectures.py --threads {machine['threads']}` on "
            f"{machine['cpu_model']} ({machine['cpus']} cores), {machine['threads']} threads, torch "
            f"{machine['torch']}, MONAI {machine['monai']}; each network in its own process, latency = median of "
            f"{settings['repeats']} forward passes of one window after a warm-up, peak = that process's peak resident "
            f"memory. MACs = FLOPs / 2 counted by `torch.utils.flop_counter`. Dense-convolution rate of this machine: "
            f"{rates or 'not measured'}; \"of dense rate\" = (FLOPs / latency) / that rate. \"/ ours\" = latency / "
            f"Mobile U-ViT-S latency of the same dimensionality. lung1 = {volume}.")


def describe_targets(report: dict) -> str:
    """The sentence under the table that says, from the measurements alone, whether Mobile U-ViT-3D-S meets the speed
    and FLOP-rate targets and by what factor it misses one, so the README never states a verdict typed by hand."""
    networks = report["networks"]
    ours = networks.get(REFERENCE["3d"], {})
    peer_name, speedup_target = SPEEDUP_TARGET
    peer = networks.get(peer_name, {})
    if "median_seconds" not in ours or "median_seconds" not in peer:
        return "Targets not evaluated: Mobile U-ViT-3D-S or SwinUNETR was not measured in this run."
    speedup = peer["median_seconds"] / ours["median_seconds"]
    verdict = "met" if speedup >= speedup_target else f"missed by {speedup_target / speedup:.1f}x"
    sentences = [f"Targets for Mobile U-ViT-3D-S per 96^3 window: {speedup:.1f}x faster than SwinUNETR in this run "
                 f"(target {speedup_target:.0f}x: {verdict})"]
    fraction = ours.get("fraction_of_dense_rate")
    if fraction is None:
        sentences.append("FLOP rate not evaluated (no dense-convolution rate measured).")
    else:
        verdict = ("met" if fraction >= DENSE_FRACTION_TARGET
                   else f"missed by {DENSE_FRACTION_TARGET / fraction:.1f}x")
        sentences.append(f"{100 * fraction:.0f} % of the dense-convolution FLOP rate "
                         f"(target {100 * DENSE_FRACTION_TARGET:.0f} %: {verdict}).")
    return "; ".join(sentences)
