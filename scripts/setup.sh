#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv holding exactly what uv.lock lists (the package, editable, with
# its extras), Debian's libusb-1.0-0 when open3d is installed, and uv itself (pinned, in .uv/) to do the installing.
# Re-running it takes seconds: uv finds .venv already matching the lock. Packages added to .venv by hand are
# removed on the next run (the lock is the one list).
#
# Environment:
#   MFER_EXTRAS  extras to install, space-separated (default "all dev": everything the main job and the tests need).
#                E.g. MFER_EXTRAS="physio wandb video faces dev" leaves out open3d and so needs no libusb.
#   PYTHON       the Python 3.11 interpreter to build .venv from (default python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
EXTRAS="${MFER_EXTRAS:-all dev}"
say() { echo "[setup] $*"; }
fail() {
  echo "[setup] $*" >&2
  exit 1
}
has_extra() { [[ " $EXTRAS " == *" $1 "* ]]; }

# --- Debian's libusb-1.0-0: open3d (extra "3d", part of "all") cannot be imported without it.
if has_extra all || has_extra 3d; then
  ldconfig_bin="$(command -v ldconfig || echo /sbin/ldconfig)"
  if ! "$ldconfig_bin" -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    if [ "$(id -u)" -eq 0 ]; then
      SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO="sudo"
    else
      fail "open3d (extra '3d') needs the system library libusb-1.0, which is not installed, and this user cannot \
install it. Either install it and run this script again:
    sudo apt-get install libusb-1.0-0        (Debian/Ubuntu; other systems: their libusb-1.0 package)
or leave out the 3d extra (no SynthAffect generation, no depth -> point cloud conversion):
    MFER_EXTRAS=\"physio wandb video faces dev\" bash scripts/setup.sh"
    fi
    command -v apt-get >/dev/null 2>&1 \
      || fail "open3d (extra '3d') needs libusb-1.0 and this is not a Debian/Ubuntu system: install your system's \
libusb-1.0 package, or leave out the 3d extra: MFER_EXTRAS=\"physio wandb video faces dev\" bash scripts/setup.sh"
    say "installing Debian package libusb-1.0-0 (needed by open3d)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
  fi
fi

# --- Python 3.11 (pyproject.toml's requires-python; uv.lock is resolved for it).
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3.11
  command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
  || fail "Python 3.11 is needed ($PYTHON is $("$PYTHON" --version 2>&1 || echo missing)); \
install it (Debian 12: apt-get install python3.11 python3.11-venv) or name one with PYTHON=/path/to/python3.11"

# --- uv, pinned: the one on PATH if it is this version, else a private copy in .uv/ installed with pip.
UV=uv
if [ "$(uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  UV=.uv/bin/uv
  if [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    say "installing uv $UV_VERSION into .uv/ with pip"
    rm -rf .uv
    "$PYTHON" -m venv .uv || fail "could not create .uv/ (Debian: apt-get install python3.11-venv)"
    .uv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" 2>&1 | grep -v "is ignored" || true
    [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ] \
      || fail "installing uv $UV_VERSION failed: see the pip output above"
  fi
fi

# --- .venv = uv.lock, exactly (--locked refuses a uv.lock that no longer matches pyproject.toml).
extra_args=()
for extra in $EXTRAS; do extra_args+=(--extra "$extra"); done
# MTCNN (dependency group "mtcnn", installed by default) belongs with the face tools.
if ! has_extra all && ! has_extra faces; then extra_args+=(--no-group mtcnn); fi
# Bytecode is compiled at install time (as pip does): where PYTHONDONTWRITEBYTECODE is set, as on this project's
# machines, every process would otherwise compile torch, Lightning and the rest again (about 10 s per process).
stamp=.venv/.mfer-setup
want="$(cat uv.lock pyproject.toml | sha256sum | cut -d' ' -f1) $UV_VERSION $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then extra_args+=(--compile-bytecode); fi
UV_PROJECT_ENVIRONMENT=.venv UV_PYTHON_DOWNLOADS=never "$UV" sync --locked --python "$PYTHON" "${extra_args[@]}" \
  || fail "uv sync failed (see above). If it says the lockfile needs to be updated, pyproject.toml's dependencies \
changed: run '$UV lock' and commit uv.lock."

# --- Import what the chosen extras bring, once per change of the lock, pyproject.toml, extras or uv.
modules="multimodal_fer torch torchaudio torchvision lightning timm torchmetrics jsonargparse"
if has_extra all || has_extra 3d; then modules+=" open3d"; fi
if has_extra all || has_extra physio; then modules+=" neurokit2"; fi
if has_extra all || has_extra wandb; then modules+=" wandb"; fi
if has_extra all || has_extra video; then modules+=" av soundfile"; fi
if has_extra all || has_extra faces; then modules+=" cv2 facenet_pytorch"; fi
if has_extra dev; then modules+=" pytest xdist skimage sklearn importlinter"; fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "checking imports: $modules"
  .venv/bin/python -c "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]" $modules \
    || fail "an installed package does not import: see the error above"
  echo "$want" >"$stamp"
fi
say "ready in ${SECONDS} s: $(.venv/bin/python -c 'from importlib.metadata import version as v; print("multimodal-fer", v("multimodal-fer"), "torch", v("torch"))') (extras: $EXTRAS)"
