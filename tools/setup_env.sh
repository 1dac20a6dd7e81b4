#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install what the project needs.
#
# PyTorch is installed first, pinned, so that no other package makes pip resolve a newer torch (with gigabytes of
# CUDA packages). Override the pin with TORCH_SPEC, e.g. TORCH_SPEC="torch==2.13.0+cu126 --index-url ...".
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail

repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MOBILEUVIT_VENV:-$repository/.venv}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
extras="${MOBILEUVIT_EXTRAS:-test}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.mobileuvit-installed"
wanted="$(sha256sum < "$repository/pyproject.toml" | cut -c1-16) $torch_spec $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
"$venv/bin/python" -m pip install --quiet $torch_spec
"$venv/bin/python" -m pip install --quiet -e "$repository[$extras]"
echo "$wanted" > "$stamp"
echo "installed MobileUViTSegment and its dependencies into $venv"
