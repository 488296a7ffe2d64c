#!/usr/bin/env bash
# Check the supported Python range beyond the development one (3.11): for every Python version in
# $PYTHONS (default "3.12 3.13") found on this machine, build the wheel, install it into a fresh
# virtual environment (torch pinned to the version the reference run recorded), run the `smoke`
# preset and audit it, and audit this repository's reference run, recorded on Python 3.11
# (manifests/reference/smoke-v2.json): it must reproduce (bitwise on the machine type that recorded
# it, within the gate's tolerance elsewhere).
#
# Interpreters are found as pythonX.Y on PATH, in pyenv's versions, or with `uv python find`.
# A version that is not on the machine is reported as skipped, not as passed. Exit: 0 when every
# version found passed, 1 when one failed, 2 when none was found.
#
#   PYTHONS        versions to check (default "3.12 3.13")
#   TORCH_VERSION  torch to install (default: the one in .venv); pip must find a wheel of it for
#                  each Python (on a machine without a local one: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHONS=${PYTHONS:-"3.12 3.13"}
TORCH_VERSION=${TORCH_VERSION:-$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('torch').split('+')[0])")}
REFERENCE=manifests/reference/smoke-v2.json

works() {  # a real interpreter of that version (a pyenv shim of a version not selected is not)
  "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$2'.split('.'))))" >/dev/null 2>&1
}

find_python() {
  local v=$1 candidate pyenv_root
  pyenv_root=$( (pyenv root || "$HOME/.pyenv/bin/pyenv" root) 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "$(command -v "python$v")" "$pyenv_root"/versions/"$v".*/bin/python"$v" \
                   "$(command -v uv >/dev/null && uv python find "$v" 2>/dev/null)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && works "$candidate" "$v" && { echo "$candidate"; return 0; }
  done
  return 1
}

dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
.venv/bin/python -m build --no-isolation --wheel --outdir "$dist" . >"$dist/build.log" 2>&1 \
  || { echo "building the wheel failed:"; tail -20 "$dist/build.log"; exit 1; }
wheel=$(ls "$dist"/repro_audit-*.whl)

passed=() failed=() skipped=()
for v in $PYTHONS; do
  if ! py=$(find_python "$v"); then
    echo "python $v: not found on this machine, skipped"; skipped+=("$v"); continue
  fi
  work=$(mktemp -d)
  echo "python $v ($py): installing $(basename "$wheel") with torch==$TORCH_VERSION in $work"
  echo "torch==$TORCH_VERSION" >"$work/torch-constraint.txt"
  export HOME="$work/home" && mkdir -p "$HOME"
  unset REPRO_SIGNING_KEY REPRO_CACHE_DIR XDG_CONFIG_HOME PYTHONPATH
  if ! { "$py" -m venv "$work/venv" && "$work/venv/bin/python" -m pip install -q --disable-pip-version-check \
          -c "$work/torch-constraint.txt" "$wheel"; } >"$work/install.log" 2>&1; then
    echo "python $v: install failed (is torch==$TORCH_VERSION available for Python $v from pip's indexes?):"
    tail -5 "$work/install.log"; failed+=("$v"); continue
  fi
  mkdir -p "$work/reference/manifests/reference"
  cp -r "$REFERENCE" "${REFERENCE%.json}" "$work/reference/manifests/reference/"
  if (cd "$work" && venv/bin/repro run smoke --out manifests/run.json >run.log 2>&1 \
        && venv/bin/repro audit manifests/run.json --json audit-own.json >>run.log 2>&1 \
        && venv/bin/repro audit "reference/$REFERENCE" --trusted-keys "$ROOT/manifests/trusted-keys.txt" \
             --json audit-311.json >>run.log 2>&1); then
    verdict() { "$work/venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['verdict'])" "$1"; }
    echo "python $v: smoke run audited $(verdict "$work/audit-own.json"); the 3.11 reference audited $(verdict "$work/audit-311.json")"
    passed+=("$v"); rm -rf "$work"
  else
    echo "python $v: FAILED (log: $work/run.log)"; tail -5 "$work/run.log"; failed+=("$v")
  fi
done
echo "passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; not found here: ${skipped[*]:-none}"
[ ${#failed[@]} -gt 0 ] && exit 1
[ ${#passed[@]} -eq 0 ] && exit 2
exit 0
