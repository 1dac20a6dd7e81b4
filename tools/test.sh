#!/usr/bin/env bash
# Quick start 2: set up, then run the test suite (what CI runs). Extra arguments go to pytest, e.g. -m slow.
# Tests on real data read it from MOBILEUVIT_DATA (default: ../shared/data beside the checkout).
set -euo pipefail
repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repository/tools/setup_env.sh"
cd "$repository"
"${MOBILEUVIT_VENV:-$repository/.venv}/bin/ruff" check .
exec "${MOBILEUVIT_VENV:-$repository/.venv}/bin/python" -m pytest "$@"
