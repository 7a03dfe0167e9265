#!/usr/bin/env bash
# Every GPU check of the package in one pass, for a GPU machine lent for minutes (docs/install.md, "On a GPU").
#
# On the GPU machine, from the repository root:
#   1. fit_bf16        the quickstart (all four modalities) in bf16-mixed, CSV logging, then its test;
#   2. fit_ddp_nccl    the same under DDP with NCCL on one device (--trainer.strategy=ddp);
#   3. throughput_bf16 and throughput_fp32: benchmarks/throughput.py (loader, plain PyTorch, Lightning; samples/s);
#   4. restoration_bf16: the restoration GAN of the main job's stage 1 in bf16-mixed (6 epochs, then its test);
#      restoration_ddp: one epoch of it under DDP (ddp_find_unused_parameters_true, NCCL);
#   5. behind_restorer: stage 2, the quickstart behind that restorer; joint: stage 3, restorer and recogniser
#      fine-tuned together; both bf16-mixed.
# "STEP <step> rc=<rc> seconds=<s>" goes to stdout and $OUT/steps.txt (with the end of a failed step's log), the
# device and versions to $OUT/device.txt, the throughput figures to $OUT/throughput-{bf16,fp32}.json, and every step's
# log with every fit's run.json and results-test.json to $OUT/results.tgz: five files, within what the device tool
# brings back.
#
# The GPU machine has torch, Lightning, torchaudio, torchmetrics and timm but neither the data set's renderer
# (open3d) nor jsonargparse, and reaches no registry, so both travel from here. Prepare them once, here, with the
# package installed (scripts/setup.sh):
#   bash benchmarks/gpu_checks.sh --prepare
# which builds a 192-sample SynthAffect cache in .gpu/synthaffect (about 22 MB) and downloads the wheels of
# jsonargparse and its two signature helpers, at uv.lock's versions, into .whl/ (both folders are ignored by git:
# the script adds them to .git/info/exclude). Then run it there (the device tool: command
# "bash benchmarks/gpu_checks.sh 2>&1", carry [".gpu", ".whl"], a timeout near 480 s: the steps take a few minutes
# on an H100). Without a GPU the script says so and stops; each step has its own time limit, so one that hangs
# costs only its own. `bash benchmarks/gpu_checks.sh --cpu-dry-run OUT` runs every step here on the CPU, one batch
# per stage and two timed throughput steps, to check the commands before the GPU's minutes are spent on them.
set -uo pipefail
cd "$(dirname "$0")/.."

CACHE=.gpu/synthaffect
WHEELS=.whl
DATA=(
  "--data.init_args.root=$CACHE" --data.init_args.num_subjects=12 --data.init_args.samples_per_subject=16
  --data.init_args.val_subjects=2 --data.init_args.test_subjects=2
)
WHEEL_PACKAGES=(jsonargparse docstring-parser typeshed-client)

if [ "${1:-}" = "--prepare" ]; then
  set -e
  for path in /.gpu/ /.whl/; do grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >>.git/info/exclude; done
  .venv/bin/mfer prepare --config configs/quickstart.yaml "${DATA[@]}"
  mkdir -p "$WHEELS"
  for package in "${WHEEL_PACKAGES[@]}"; do
    version=$(.venv/bin/python - "$package" <<'EOF'
import sys, tomllib
lock = tomllib.load(open("uv.lock", "rb"))
print(next(p["version"] for p in lock["package"] if p["name"] == sys.argv[1]))
EOF
)
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS" "$package==$version"
  done
  du -sh "$CACHE" "$WHEELS"
  exit 0
fi

PYTHON=python3
SHORT=()         # the dry run's one batch per stage
STEPS=(--steps 30)
if [ "${1:-}" = "--cpu-dry-run" ]; then
  shift
  PYTHON=.venv/bin/python
  SHORT=(--trainer.accelerator=cpu --trainer.limit_train_batches=1 --trainer.limit_val_batches=1
    --trainer.limit_test_batches=1)
  STEPS=(--steps 2 --warmup 1)
fi
OUT=${OUT:-${1:-gpu-checks}}
LOGS=runs/gpu-checks/logs  # each step's log (runs/ is ignored), packed into results.tgz at the end
mkdir -p "$OUT" "$LOGS"
if [ "$PYTHON" = python3 ] && ! python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "No CUDA device is visible: these are GPU checks (prepare here with --prepare, run on the GPU machine)." >&2
  exit 2
fi
[ -f "$CACHE/manifest.json" ] || { echo "No cache at $CACHE: run 'bash benchmarks/gpu_checks.sh --prepare' first." >&2; exit 2; }
if ! "$PYTHON" -c 'import jsonargparse' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { echo "Installing the wheels in $WHEELS failed: prepare them with --prepare." >&2; exit 2; }
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled PYTHONUNBUFFERED=1
MFER=("$PYTHON" -m multimodal_fer)
RUNS=runs/gpu-checks  # every fit's run folder lands under it
CSV=(--config configs/overlays/csv_logger.yaml "--run.root=$RUNS")
BF16=(--trainer.precision=bf16-mixed "${SHORT[@]}")
RESTORER_KEY=--model.init_args.encoders.face.init_args.restorer.init_args.checkpoint

step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2 start rc milliseconds
  shift 2
  start=$(date +%s%N)
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  milliseconds=$((($(date +%s%N) - start) / 1000000))
  printf 'STEP %s rc=%s seconds=%d.%03d\n' "$name" "$rc" $((milliseconds / 1000)) $((milliseconds % 1000)) \
    | tee -a "$OUT/steps.txt"
  [ "$rc" -eq 0 ] || tail -n 15 "$LOGS/$name.log" | tee -a "$OUT/steps.txt"
}

{
  nvidia-smi 2>/dev/null || echo "(no nvidia-smi)"
  "$PYTHON" -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__,
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
} >"$OUT/device.txt" 2>&1
head -n 20 "$OUT/device.txt"

step fit_bf16 120 "${MFER[@]}" fit --config configs/quickstart.yaml "${CSV[@]}" "${DATA[@]}" "${BF16[@]}" \
  --run.experiment=gpu-fit --trainer.max_epochs=3
step fit_ddp_nccl 150 "${MFER[@]}" fit --config configs/quickstart.yaml "${CSV[@]}" "${DATA[@]}" "${BF16[@]}" \
  --run.experiment=gpu-ddp --trainer.max_epochs=2 --trainer.strategy=ddp --trainer.devices=1
step throughput_bf16 120 "$PYTHON" benchmarks/throughput.py --config configs/quickstart.yaml "${STEPS[@]}" \
  --precision bf16-mixed --output "$OUT/throughput-bf16.json" "${DATA[@]}"
step throughput_fp32 120 "$PYTHON" benchmarks/throughput.py --config configs/quickstart.yaml "${STEPS[@]}" \
  --precision 32-true --output "$OUT/throughput-fp32.json" "${DATA[@]}"
step restoration_bf16 150 "${MFER[@]}" fit --config configs/restoration/synthaffect.yaml "${CSV[@]}" "${DATA[@]}" \
  "${BF16[@]}" --trainer.max_epochs=6
step restoration_ddp 150 "${MFER[@]}" fit --config configs/restoration/synthaffect.yaml "${CSV[@]}" "${DATA[@]}" \
  "${BF16[@]}" --run.experiment=gpu-restoration-ddp --trainer.max_epochs=1 \
  --trainer.strategy=ddp_find_unused_parameters_true --trainer.devices=1
step behind_restorer 120 "${MFER[@]}" fit --config configs/quickstart.yaml --config configs/overlays/face_restorer.yaml \
  "${CSV[@]}" "${DATA[@]}" "${BF16[@]}" --trainer.max_epochs=3 \
  "$RESTORER_KEY=$RUNS/restoration/latest/checkpoints/restorer.ckpt"
step joint 120 "${MFER[@]}" fit --config configs/quickstart.yaml --config configs/overlays/face_restorer.yaml \
  --config configs/overlays/face_restorer_joint.yaml "${CSV[@]}" "${DATA[@]}" "${BF16[@]}" --trainer.max_epochs=2 \
  "$RESTORER_KEY=$RUNS/restoration/latest/checkpoints/restorer.ckpt" \
  "--model.init_args.recogniser_checkpoint=$RUNS/quickstart-restorer/latest"

tar czf "$OUT/results.tgz" "$LOGS" $(find "$RUNS" -name 'results-test*.json' -o -name 'run.json' 2>/dev/null)
