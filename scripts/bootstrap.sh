#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: CPU torch, then repro with its
# test extras. Idempotent: a second call with an unchanged pyproject.toml does nothing.
#
#   TORCH_SPEC  what to install when torch is absent (default torch==2.13.0; on a machine without
#               a local CPU wheel, add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
#               to avoid a multi-GB CUDA build)
#   VENV        where the environment lives (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# Some machines' pip configuration names package folders that do not exist; pip then warns once per
# package. Drop exactly that line so set-up stays quiet; every other warning and error still shows.
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
stamp="$VENV/.repro-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# Ask the package metadata, not `import torch`: importing torch before numpy is installed prints
# a "Failed to initialize NumPy" warning on a fresh machine.
installed_torch() { "$VENV/bin/python" -c "import importlib.metadata as m; print('torch==' + m.version('torch').split('+')[0])" 2>/dev/null; }
if ! installed_torch >/dev/null; then
  echo "installing $TORCH_SPEC (CPU build where one is available locally)" >&2
  quiet_pip install "$TORCH_SPEC"
fi
# Pin the torch that is now installed, so no dependency can swap it for another (CUDA) build.
installed_torch > "$VENV/torch-constraint.txt"
echo "installing repro and its dependencies" >&2
quiet_pip install -c "$VENV/torch-constraint.txt" -e '.[test,lint,lightning,litgpt]'
echo "$want" > "$stamp"
