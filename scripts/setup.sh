#!/usr/bin/env bash
# Set up edgeq on a fresh Debian/Ubuntu machine and run the bundled example build.
#   ./scripts/setup.sh            apt packages + .venv + edgeq (editable, with test, plots and torch extras) + example
#   ./scripts/setup.sh --no-example   the same without the example build
# apt packages: toolchains and servers the tests use for real (gcc, arm-none-eabi-gcc,
# qemu-system-arm, cmake, OpenSSH's sshd).
set -euo pipefail
cd "$(dirname "$0")/.."

run_example=1
[ "${1:-}" = "--no-example" ] && run_example=0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_PACKAGES=(python3 python3-venv python3-dev gcc g++ make cmake xxd
  gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib
  qemu-system-arm openssh-server openssh-client strace)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo ">> apt-get install ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv" >&2
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >&2
# torch first, pinned to the CPU build: the torch extra would otherwise resolve to PyPI's CUDA
# wheels (~2.7 GB). This machine's pip finds 2.13.0+cpu locally; elsewhere PyTorch's CPU index has it.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo ">> pip install torch==2.13.0+cpu" >&2
  .venv/bin/python -m pip install -q "torch==2.13.0+cpu" >&2 \
    || .venv/bin/python -m pip install -q "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu >&2
fi
echo ">> pip install -e .[test,plots,torch]" >&2
.venv/bin/python -m pip install -q -e ".[test,plots,torch]" >&2

if [ "$run_example" = 1 ]; then
  echo ">> edgeq build --example --out build/example --force" >&2
  .venv/bin/edgeq build --example --out build/example --force
fi
