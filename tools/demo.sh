#!/usr/bin/env bash
# Quick start 1: set up, then segment the bundled hippocampus MRI with the shipped model.
# Writes mobileuvit-demo/hippocampus_046.seg.nrrd (open it in 3D Slicer) and a PNG overlay to look at.
set -euo pipefail
repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOBILEUVIT_EXTRAS="${MOBILEUVIT_EXTRAS:-test}" "$repository/tools/setup_env.sh"
exec "${MOBILEUVIT_VENV:-$repository/.venv}/bin/mobileuvit-segment" demo "$@"
