#!/usr/bin/env bash
# Idempotent set-up: Debian's libusb-1.0-0 (open3d needs it), a virtual environment in .venv, the package
# with its test extras. Re-running it reuses what is there and reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  echo "[setup] installing Debian package libusb-1.0-0 (needed by open3d)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.mfer-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import multimodal_fer" 2>/dev/null; then
  echo "[setup] installing multimodal-fer and its dependencies into .venv (first time: about 2-3 minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "is ignored" || true
  # MTCNN face detector with its weights in the wheel; --no-deps because its metadata pins torch<2.3 and numpy<2
  # (its code runs on torch 2.11 and numpy 2; tests/test_media_preprocessing.py checks it on a real photo).
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "facenet-pytorch==2.6.0" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import multimodal_fer, torch, torchaudio, lightning, open3d, neurokit2, wandb, cv2, av, soundfile, facenet_pytorch" \
    || { echo "[setup] installation failed: see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, multimodal_fer; print("multimodal-fer", multimodal_fer.__version__, "torch", torch.__version__)')"
