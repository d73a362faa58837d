#!/usr/bin/env bash
# The install a user gets: build netparity's wheel, install it into a fresh virtual
# environment with the torch extra only (no MXNet, no Keras), and run the CLI from a
# directory outside the checkout, so nothing can be imported from the source tree.
# Fails on any non-zero exit. Usage: tests/packaging/wheel_smoke.sh  (PYTHON=... to choose
# the interpreter that builds and creates the venv; KEEP=1 keeps the temporary folder).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d -t netparity-wheel-smoke.XXXXXX)"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
unset PYTHONPATH
step() { printf '\n== %s\n' "$*"; }

# Build from a copy of the files git would ship (tracked and untracked, not ignored): an
# in-tree build/ folder can hold stale modules that a deleted source file left behind.
step "build the wheel"
mkdir -p "$WORK/src" "$WORK/dist"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$WORK/src"
"$PYTHON" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/netparity-*.whl)"
echo "$WHEEL"

# uv when the venv has it (the test extra brings it): it installs the 5-6 GB of PyTorch about 3x faster
# than pip on a cold cache and in seconds from its cache; pip otherwise. Either honours pip's configured
# constraints file, if any.
step "fresh venv, install '$(basename "$WHEEL")[torch]'"
start=$SECONDS
constraint="$("$PYTHON" -m pip config list 2>/dev/null | sed -n "s/^global\.constraint='\(.*\)'$/\1/p")"
if "$PYTHON" -m uv --version >/dev/null 2>&1; then
  "$PYTHON" -m uv venv --quiet --python "$PYTHON" "$WORK/venv"
  "$PYTHON" -m uv pip install --quiet --python "$WORK/venv/bin/python" ${constraint:+--constraint "$constraint"} \
    "$WHEEL[torch]"
  how=uv
else
  "$PYTHON" -m venv "$WORK/venv"
  # (pip names every configured index folder it finds empty; those lines are noise here)
  "$WORK/venv/bin/python" -m pip install --quiet "$WHEEL[torch]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  how=pip
fi
echo "venv + install ($how) took $((SECONDS - start)) s"

mkdir -p "$WORK/elsewhere"
cd "$WORK/elsewhere"
BIN="$WORK/venv/bin"
step "netparity comes from the venv; MXNet and Keras are absent"
"$BIN/python" - "$WORK/venv" <<'PY'
import importlib.util, sys
import netparity
assert netparity.__file__.startswith(sys.argv[1]), f"netparity imported from {netparity.__file__}"
for name in ("mxnet", "keras", "tensorflow"):
    assert importlib.util.find_spec(name) is None, f"{name} is installed; the torch extra alone must not bring it"
print("netparity", netparity.__version__, "from", netparity.__file__)
PY
step "netparity list";        "$BIN/netparity" list
step "netparity show resnet18"; "$BIN/netparity" show resnet18
step "netparity check lenet_bn --frameworks torch"
"$BIN/netparity" check lenet_bn --frameworks torch
step "wheel smoke test passed"
