"""Does restoration rescue recognition of occluded faces? Clean vs occluded vs restored, per occlusion kind.

For each seed this script

1. trains face-only recognisers with the quickstart's settings (``configs/quickstart.yaml``, ``modalities=[face]``)
   and the face encoder feeding the heads through a plain MLP (``configs/overlays/fusion_concat.yaml``: with one
   modality there is nothing to attend over, and the attention fusion left some seeds at chance):

   - **R-clean** on the unoccluded renders (``clean_faces=true``, the usual protocol of occlusion studies),
   - **R** on SynthAffect's faces as generated (30 % occluded),
   - **R-occ**, trained with a fresh random occluder on every training face (``online_occlusion_probability=1``):
     the occlusion-robust recogniser restoration competes with,
   - **R-aug**, R-clean's setup with a fresh occluder on about half of the (clean) training faces
     (``online_occlusion_probability=0.5``): clean-face training plus occlusion augmentation,
   - **R+restorer**, R's configuration trained behind the frozen restorer (``configs/overlays/face_restorer.yaml``),
   - **R+mask**, R's configuration as a mask-aware recogniser: the occluded face plus the occlusion mask predicted by
     the frozen restorer's mask network as a 4th input channel (``configs/overlays/face_mask_aware.yaml``);
   - **R+joint**, R+restorer and its restorer fine-tuned together for ``--joint-epochs`` (10) with soft compositing,
     the restorer keeping the reconstruction, mask and adversarial losses at the weights of its restoration config
     (``configs/overlays/face_restorer_joint.yaml``; SynthAffect only: it needs clean faces and true masks);
   - with ``--continue-epochs N``, **R-clean+**, **R-aug+** and **R-mask+**: R-clean's setup whose face encoder
     starts from R-clean's best checkpoint (``pretrained_encoders``; the heads start afresh) and trains N more
     epochs, on clean faces, with R-aug's occlusion augmentation, or with that augmentation as a mask-aware
     recogniser (the frozen restorer's predicted mask as a 4th input channel, starting at zero; trained after the
     restorer): the baselines at the training budget of R-clean plus more (a restorer costs far more than N
     recogniser epochs); R-clean+ and R-aug+ are evaluated behind the restorer too;

2. trains the restorer (``configs/restoration/synthaffect.yaml``, or ``--restoration-config``, e.g. the long recipe
   ``configs/restoration/synthaffect_long.yaml``, with any ``--restoration-overlay`` composed after it; with
   ``--guided``, R-clean is its frozen critic (``recogniser_critic``), and a second clean-face recogniser
   **R-clean′** (seed + 1000), which the restorer never sees, is evaluated too: does the restorer make faces any
   recogniser reads, or only its critic? With ``--recogniser-config`` the critic is R-clean's setup without those
   overlays, its own run ``seed<s>/critic``, so every evaluated recogniser is independent of the restorer and the
   restorer of the recipe being measured),
   With ``--calibrate-masks`` (needs ``--guided``) the finished restorer's mask threshold and dilation are then
   chosen by its critic's expression macro-F1 on blindly restored faces of an occlusion split of the validation
   subjects (``mfer calibrate-restorer``; the weights stay as trained), written to
   ``<out>/seed<s>/restoration_calibrated``, and that calibrated restorer is the one evaluated and the one the
   stage-2 recognisers trained after it load (a fine-tuned restorer's last checkpoint competes there with its best
   one: the calibration chooses the checkpoint too). The same validation faces then choose, before the test
   evaluation, each restoring recogniser's selective-restoration share (restore only faces whose predicted occluded
   share is at most it; ``<out>/selective-validation``), and a recogniser whose best share is below 1 gets a
   ``restored_selective`` pipeline on the test split (docs/occlusion.md, "Restoring only what is worth
   restoring"). With ``--tune-epochs N`` (needs ``--guided``) the finished restorer
   is first fine-tuned for N epochs in a new run, ``<out>/seed<s>/restoration_tuned``, that starts from its best
   checkpoint (``initial_checkpoint``) and is judged by ``--tune-critics`` frozen critics (the critic and more of
   its setup from seeds s + 2000, s + 3000, ...: runs ``critic2``, ``critic3``, ...) with the label term at
   ``--tune-label-weight``, its last ``--tune-decay-epochs`` epochs decaying both learning rates linearly towards
   zero; that restorer is then the one calibrated, evaluated and loaded by stage 2 (a larger N later continues a
   finished constant-rate fine-tuning from its last checkpoint, once the runs built on it are moved away);
3. builds the deterministic occlusion split of the test subjects (every test face once with every occlusion kind;
   ``mfer occlusion-split``), and
4. through the package evaluation (``mfer occlusion-benchmark``, :mod:`multimodal_fer.evaluation.occlusion_benchmark`),
   evaluates the same weights of every recogniser on the clean faces, the occluded faces, the occluded faces
   restored blindly (predicted masks) and restored with the true masks (an upper bound for the mask network), and
   the clean faces through the blind restorer (what its false alarms cost);
   the same with each trivial fill of ``--fills`` in place of the generator, behind the same masks (mean colour,
   OpenCV's Telea and Navier–Stokes inpainting, left–right mirror: what the generator must beat);
   R+restorer and R+mask on the occluded faces (they restore or mask them themselves) and the clean ones; and the
   restorer itself (PSNR of the occluded region, whole-face SSIM, mask IoU). Every score comes with a 95 % interval
   of the seed mean from one draw of the test subjects shared by all seeds; recovery shares and the paired
   differences of R-clean's blind restoration against R-aug, R-occ and R+mask on occluded faces and against each
   fill have intervals too.

``--data-config configs/data/<name>.yaml`` trains the recognisers on that data set (composed after the quickstart;
``clean_faces`` is left out, since a real data set's faces are unoccluded, so R-clean and R share a recipe there)
and builds its occlusion split; the restorer still trains on SynthAffect (``--restoration-data-root``, at the image
size of the recognisers' data, or the evaluation refuses it) unless ``--restorer-run FOLDER`` names a finished
restoration run, which every seed then uses.

Every model is one run folder (docs/runs.md) named by the script: ``<out>/seed<s>/R_clean``, ``.../R``,
``.../R_occ``, ``.../R_aug``, ``.../R_restorer``, ``.../R_mask``, ``.../R_joint``, ``.../R_clean_other`` and the
restorer's ``<out>/seed<s>/restoration`` (``--run.root``, ``--run.experiment``, ``--run.name``). Each model is
loaded from the best checkpoint its ``run.json`` names (the restorer's is ``checkpoints/restorer.ckpt``), and
R+restorer, R+mask and R+joint are given that seed's restorer checkpoint explicitly. Finished runs are reused and
interrupted ones resumed (``--ckpt_path last``).

It writes ``predictions-seed<s>.npz`` (every per-sample output), ``spec.json`` (the evaluation's spec),
``summary.json``, ``summary.md`` (mean ± std over seeds [interval], overall and per kind) and ``verdict.md`` (issue
18's three measurable claims read off the summary, ``benchmarks/occlusion_verdict.py``) to ``--out``;
``--report-only`` rebuilds the summary from the npz files. ``--only recognisers``, ``--only restorer`` (with its
critic) or ``--only <run folder name>`` (``R_aug``; those behind the restorer once it has finished) train one part of
each seed and stop, so that several processes (or machines sharing the folder) can work side by side; a run without
it then trains what is left and evaluates.

Usage:
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 1 2
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 1 2 --report-only
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 0 --fills mean_colour mirror
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark --seeds 2 --only restorer R_clean R_aug \
      # one seed's parts in a row, one process per seed; resumable: rerun the same command after an interruption
  python benchmarks/occlusion_restoration.py --out runs/occlusion_benchmark_recipe --seeds 0 1 2 \
    --recogniser-config configs/overlays/face_recipe.yaml     # every recogniser with issue 18's recipe
  python benchmarks/occlusion_restoration.py --out runs/occlusion_rafdb --seeds 0 1 2 \
    --data-config configs/data/rafdb.yaml --restorer-run runs/occlusion_benchmark/seed0/restoration
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from occlusion_verdict import VERDICT_MD, verdict_markdown

from multimodal_fer.benchmarking.run_lookup import (
    best_checkpoint,
    read_run_record,
    run_folder,
    run_folder_arguments,
    run_state,
)
from multimodal_fer.evaluation.occlusion_benchmark import (
    SPEC_JSON,
    SUMMARY_JSON,
    SUMMARY_MD,
    predictions_path,
    run_benchmark,
)
from multimodal_fer.evaluation.occlusion_evaluation import compact_seed
from multimodal_fer.evaluation.occlusion_spec import BASE_CONDITIONS, SELECTIVE_CONDITION, BenchmarkSpec, parse_spec
from multimodal_fer.evaluation.occlusion_tables import markdown
from multimodal_fer.evaluation.restorer_calibration import CALIBRATION_JSON
from multimodal_fer.models.restoration import TRIVIAL_FILLS
from multimodal_fer.run_folder import RUN_FOLDER_ENVIRONMENT

REPO = Path(__file__).resolve().parents[1]
RESTORATION_CONFIG = REPO / "configs/restoration/synthaffect.yaml"
FER_CONFIG = REPO / "configs/quickstart.yaml"
FACE_ONLY_OVERLAY = REPO / "configs/overlays/fusion_concat.yaml"
#: With --own-faces: the restorer trains on the --data-config data set's faces, occluders drawn on them.
OWN_FACES_OVERLAY = REPO / "configs/restoration/overlays/own_faces.yaml"
RESTORER_OVERLAY = REPO / "configs/overlays/face_restorer.yaml"
MASK_AWARE_OVERLAY = REPO / "configs/overlays/face_mask_aware.yaml"
JOINT_OVERLAY = REPO / "configs/overlays/face_restorer_joint.yaml"
#: Overlays that load the seed's restorer: their recognisers are trained after it.
BEHIND_RESTORER = (str(RESTORER_OVERLAY), str(MASK_AWARE_OVERLAY))
#: Stage 3, fine-tuned from R+restorer's run: trained after it.
JOINT_RUN, JOINT_START = "R_joint", "R_restorer"
#: The restorer's loss weights the joint fine-tuning keeps, read from the restoration config it was trained with.
JOINT_LOSS_WEIGHTS = ("hole_weight", "valid_weight", "adversarial_weight", "feature_matching_weight")
#: The restorer's run folder in a seed's folder.
RESTORER_RUN = "restoration"
#: Its copy with the mask setting chosen on validation faces (``--calibrate-masks``).
CALIBRATED_RUN = "restoration_calibrated"
#: The restorer fine-tuned from the restoration run's best checkpoint by several critics (``--tune-epochs``).
TUNED_RUN = "restoration_tuned"
#: Seed offset of the n-th critic of the fine-tuning (n ≥ 2; R-clean′ has 1000): ``critic2`` is seed + 2000.
EXTRA_CRITIC_SEED_STEP = 1000
#: Where ``--calibrate-masks`` evaluates the recognisers on the validation occlusion split to choose each one's
#: selective-restoration share (``max_occluded_fraction``), in ``--out``.
SELECTIVE_VALIDATION = "selective-validation"
#: Bootstrap draws of that evaluation (its choice reads the validation faces as they are, not the draws).
SELECTIVE_VALIDATION_RESAMPLES = 100
#: The key of the overlays of :data:`BEHIND_RESTORER` that names the restorer checkpoint stage 2 loads.
RESTORER_CHECKPOINT_KEY = "model.init_args.encoders.face.init_args.restorer.init_args.checkpoint"
ALL_CONDITIONS = BASE_CONDITIONS  # clean, occluded, restored, restored_true_mask, clean_restored
#: SynthAffect's unoccluded renders; a real data set's faces count as clean already: with --data-config it is left out.
CLEAN_FACES = "--data.init_args.clean_faces=true"
#: The recognisers' cache without --data-root or --data-config.
DEFAULT_DATA_ROOT = "data/synthaffect"
#: Trivial fills evaluated behind the restorer's masks (``--fills``); each adds ``restored_<fill>`` and
#: ``restored_<fill>_true_mask`` to every recogniser evaluated on ``restored``.
FILLS: list[str] = ["mean_colour", "telea", "navier_stokes", "mirror"]


@dataclass(frozen=True)
class Recogniser:
    """A face-only recogniser of the benchmark.

    Attributes:
        label: name in the tables.
        extra: ``mfer fit`` arguments beyond the shared face-only ones.
        conditions: inputs it is evaluated on.
        seed_offset: added to the benchmark seed (another initialisation and data order).
        reference: recogniser whose clean and occluded scores its recovery is set against.
        start: run folder (of the same seed) whose best checkpoint's face encoder it starts from, trained for
            ``--continue-epochs`` instead of ``--fer-epochs`` ("" = from scratch).
    """

    label: str
    extra: tuple[str, ...]
    conditions: tuple[str, ...] = ALL_CONDITIONS
    seed_offset: int = 0
    reference: str = ""
    start: str = ""


#: Run folder → recogniser (those behind the restorer are trained after it).
RECOGNISERS: dict[str, Recogniser] = {
    "R_clean": Recogniser("R-clean", (CLEAN_FACES,)),
    "R": Recogniser("R", ()),
    "R_occ": Recogniser("R-occ", ("--data.init_args.online_occlusion_probability=1.0",)),
    "R_aug": Recogniser("R-aug", (CLEAN_FACES, "--data.init_args.online_occlusion_probability=0.5")),
    "R_restorer": Recogniser("R+restorer", ("--config", str(RESTORER_OVERLAY)), ("clean", "occluded"), reference="R"),
    "R_mask": Recogniser("R+mask", ("--config", str(MASK_AWARE_OVERLAY)), ("clean", "occluded"), reference="R"),
    JOINT_RUN: Recogniser(
        "R+joint",
        ("--config", str(RESTORER_OVERLAY), "--config", str(JOINT_OVERLAY)),
        ("clean", "occluded"),
        reference="R",
    ),
}
CRITIC = "R_clean"
#: The critic's own run folder when the recognisers compose --recogniser-config overlays (it composes none).
CRITIC_RUN = "critic"
#: Evaluated only with a guided restorer: a clean-face recogniser the restorer never saw.
INDEPENDENT = {"R_clean_other": Recogniser("R-clean′", (CLEAN_FACES,), seed_offset=1000)}
#: With ``--continue-epochs``: R-clean trained on, on clean faces, with occlusion augmentation, or with it and the mask.
CONTINUED = {
    "R_clean_cont": Recogniser("R-clean+", RECOGNISERS["R_clean"].extra, start="R_clean"),
    "R_aug_cont": Recogniser("R-aug+", RECOGNISERS["R_aug"].extra, start="R_clean"),
    "R_mask_cont": Recogniser(
        "R-mask+",
        (*RECOGNISERS["R_aug"].extra, "--config", str(MASK_AWARE_OVERLAY)),
        ("clean", "occluded"),
        reference="R_aug_cont",
        start="R_clean",
    ),
}


def run(command: list[str]) -> None:
    """Run an ``mfer`` command from the repository root, W&B off."""
    print(f"[occlusion] mfer {' '.join(command)}", flush=True)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop(RUN_FOLDER_ENVIRONMENT, None)  # set only for the processes an mfer command starts itself
    subprocess.run([sys.executable, "-m", "multimodal_fer", *command], cwd=REPO, check=True, env=env)


def fit(folder: Path, arguments: list[str], extend_to: int | None = None, decay_epochs: int = 0) -> None:
    """``mfer fit`` into the run folder ``folder`` unless it finished before (resuming an interrupted one).

    The recognisers' own tests play no part here (every figure comes from the package evaluation), so a fit counts
    as finished once ``run.json`` records its best checkpoint.

    Args:
        folder: the run folder.
        arguments: the fit's arguments (``--trainer.max_epochs`` among them when ``extend_to`` is given).
        extend_to: a finished run that trained fewer epochs than this continues from its last checkpoint up to it.
        decay_epochs: the fit's ``lr_decay_epochs`` (with ``extend_to``): its last epochs decay the learning rates,
            so a finished run continues only where that gives the schedule of one fit of ``extend_to`` epochs.

    Raises:
        SystemExit: the finished run cannot become the fit asked (see :func:`refuse_another_schedule`).
    """
    state = run_state(folder, condition=None)
    if state == "finished":
        if extend_to is None:
            return
        trained = epochs_trained(folder)
        refuse_another_schedule(folder, trained, extend_to, decay_epochs)
        if trained == extend_to:
            return
    resume = [] if state == "new" else ["--ckpt_path=last"]  # interrupted, or finished and continued
    run(["fit", *arguments, *run_folder_arguments(folder), *resume])


def epochs_trained(folder: Path) -> int:
    """The epochs a finished fit in ``folder`` trained (``run.json``'s ``epochs``).

    Raises:
        SystemExit: ``run.json`` records no epoch count (a run written before it did): the count cannot be compared.
    """
    epochs = read_run_record(folder).get("epochs")
    if not isinstance(epochs, int):
        raise SystemExit(f"{folder / 'run.json'} records no 'epochs': move the run away to fit it again.")
    return epochs


def decay_epochs_of(folder: Path) -> int:
    """The ``lr_decay_epochs`` a fit in ``folder`` last trained with: its latest session's saved config, 0 if unset.

    ``mfer fit`` saves ``config.yaml``, and each resumed session ``config-resumed.yaml``, ``config-resumed.2.yaml``
    ...; a run without any (or a model without the setting) trained at constant rates.
    """
    resumed = sorted(
        folder.glob("config-resumed*.yaml"),
        key=lambda path: int(path.suffixes[0][1:]) if len(path.suffixes) > 1 and path.suffixes[0][1:].isdigit() else 1,
    )
    configs = [path for path in (folder / "config.yaml", *resumed) if path.is_file()]
    if not configs:
        return 0
    model = (yaml.safe_load(configs[-1].read_text()) or {}).get("model") or {}
    return int((model.get("init_args") or {}).get("lr_decay_epochs") or 0)


def refuse_another_schedule(folder: Path, trained: int, epochs: int, decay_epochs: int) -> None:
    """Refuse to take a finished fit of ``trained`` epochs as, or continue it into, a fit of ``epochs`` epochs whose
    last ``decay_epochs`` decay the learning rates, unless the result is exactly that fit's schedule.

    A finished run is that fit when it trained ``epochs`` epochs with the same decay; it continues into it when it
    trained fewer epochs at constant rates, all before the decay starts (``trained <= epochs - decay_epochs``).

    Raises:
        SystemExit: it trained more epochs, another decay, or epochs the decay should have lowered.
    """
    had = decay_epochs_of(folder)
    move = f"Give --out another folder (or move {folder} away) to train {epochs} epochs"
    if trained > epochs:
        raise SystemExit(
            f"{folder} trained {trained} epochs, more than the {epochs} asked: a finished run is not shortened. {move}."
        )
    if trained == epochs and had != decay_epochs:
        raise SystemExit(
            f"{folder} trained {trained} epochs with lr_decay_epochs={had}, not the {decay_epochs} asked. {move}."
        )
    if trained < epochs and (had or trained > epochs - decay_epochs):
        raise SystemExit(
            f"{folder} trained {trained} epochs with lr_decay_epochs={had}: continued to {epochs} epochs it would not "
            f"follow one fit whose last {decay_epochs} epochs decay (only a constant-rate run of at most "
            f"{epochs - decay_epochs} epochs continues into it). {move}."
        )


def refuse_stale_followers(tuned: Path, followers: list[Path], tune_epochs: int) -> None:
    """Refuse to extend the finished fine-tuning ``tuned`` while runs built on its restorer are in the seed's folder.

    Raises:
        SystemExit: some of ``followers`` (the calibrated copy, the recognisers behind the restorer) hold a run:
            they would silently keep the old restorer's weights and masks.
    """
    if run_state(tuned, condition=None) != "finished" or (trained := epochs_trained(tuned)) >= tune_epochs:
        return
    stale = [path.name for path in followers if run_folder(path).holds_a_run()]
    if stale:
        raise SystemExit(
            f"{tuned} trained {trained} epochs and --tune-epochs asks for {tune_epochs}: continuing it "
            f"would leave {', '.join(stale)} built on the old restorer. Move those runs away from {tuned.parent} "
            "(or give --out a new folder holding links to the runs to keep) and run again."
        )


def train(seed: int, out: Path, data_root: Path, options: argparse.Namespace) -> Path:
    """Train the recognisers and the restorer of one seed (reusing finished runs); returns the seed's folder.

    With ``options.data_config`` the recognisers compose that data set's config after the quickstart (and leave out
    ``clean_faces``: a real data set's faces are unoccluded); the restorer trains on SynthAffect
    (``options.restoration_data_root``) unless ``options.restorer_run`` names a finished one, used by every seed, or
    ``options.own_faces`` trains it on the data set's own faces (:data:`OWN_FACES_OVERLAY`).
    """
    folder = out / f"seed{seed}"
    data_config = getattr(options, "data_config", None)
    restorer_run = getattr(options, "restorer_run", None)
    quiet = ["--trainer.logger=false"]
    fer_epochs = [f"--trainer.max_epochs={options.fer_epochs}"] if options.fer_epochs else []  # T_max follows
    behind_restorer = {name for name, r in RECOGNISERS.items() if set(BEHIND_RESTORER) & set(r.extra)} - {JOINT_RUN}
    restorer_folder = Path(restorer_run) if restorer_run else folder / RESTORER_RUN
    restoration_overlays = getattr(options, "restoration_overlay", None) or []

    def fit_recogniser(name: str, run_name: str = "", overlays: bool = True, seed_offset: int | None = None) -> None:
        recogniser = RECOGNISERS[name]
        offset = recogniser.seed_offset if seed_offset is None else seed_offset
        recogniser_configs = options.recogniser_config if overlays else []
        extra = [a for a in recogniser.extra if not (data_config and a == CLEAN_FACES)]
        restorer = []
        epochs = fer_epochs if name != JOINT_RUN else [f"--trainer.max_epochs={options.joint_epochs}"]
        started = []
        if recogniser.start:  # the face encoder of this seed's finished run, trained on for --continue-epochs
            start = folder / recogniser.start
            best_checkpoint(start)  # a finished run, or the message says how to finish it
            started = [f"--model.init_args.pretrained_encoders={{face: {start}}}"]
            epochs = [f"--trainer.max_epochs={options.continue_epochs}"]
        if name in behind_restorer or name == JOINT_RUN:  # this seed's restorer, not runs/restoration/latest
            restorer = [f"--{RESTORER_CHECKPOINT_KEY}={best_checkpoint(restorer_folder)}"]
        if name == JOINT_RUN:  # R+restorer's weights fine-tuned with the restorer's own losses, for joint_epochs
            restorer += [f"--model.init_args.recogniser_checkpoint={folder / JOINT_START}"]
            restorer += [
                f"--model.init_args.{k}={v}"
                for k, v in joint_loss_weights(options.restoration_config, restoration_overlays).items()
            ]
        fit(
            folder / (run_name or name),
            [
                "--config",
                str(FER_CONFIG),
                *(("--config", str(data_config)) if data_config else ()),
                *("--config", str(FACE_ONLY_OVERLAY)),
                *(argument for config in recogniser_configs for argument in ("--config", str(config))),
                *extra,
                *restorer,
                *started,
                f"--seed_everything={seed + offset}",
                f"--data.init_args.root={data_root}",
                *quiet,
                "--data.init_args.modalities=[face]",
                *epochs,
            ],
        )

    only = getattr(options, "only", None)  # a part ("recognisers", "restorer") or one run folder's name
    first_stage = [name for name in RECOGNISERS if name not in behind_restorer and name != JOINT_RUN]
    for name in first_stage:
        if only in (None, "recognisers", name):
            fit_recogniser(name)
    if only == "recognisers" or only in first_stage:
        return folder
    calibrate = getattr(options, "calibrate_masks", False)
    tune_epochs = getattr(options, "tune_epochs", 0)
    if only in RECOGNISERS and not restorer_run:
        restorer_folder = folder / evaluated_restorer(calibrate, tune_epochs)
    if restorer_run or only in RECOGNISERS:
        best_checkpoint(restorer_folder)  # a finished restorer, or the message says how to finish it
    else:
        restoration_root = getattr(options, "restoration_data_root", None) or data_root
        shared = ["--config", str(options.restoration_config)]
        if getattr(options, "own_faces", False):  # the data set's config, then occluders drawn on its faces
            restoration_root = data_root
            shared += ["--config", str(data_config), "--config", str(OWN_FACES_OVERLAY)]
        shared += [argument for overlay in restoration_overlays for argument in ("--config", str(overlay))]
        shared += [f"--seed_everything={seed}"]
        shared += [f"--data.init_args.root={restoration_root}", *quiet]
        restoration = list(shared)
        if options.restoration_epochs:
            restoration.append(f"--trainer.max_epochs={options.restoration_epochs}")
        if options.guided:
            # The critic is R-clean; with --recogniser-config it is R-clean's setup without those overlays, its own
            # run, so the restorer does not depend on the recogniser recipe being measured.
            critic = folder / CRITIC
            if options.recogniser_config:
                critic = folder / CRITIC_RUN
                fit_recogniser(CRITIC, CRITIC_RUN, overlays=False)
            restoration.append(f"--model.init_args.recogniser_critic={best_checkpoint(critic)}")
        fit(restorer_folder, restoration)
        if tune_epochs:
            # More critics of the critic's setup, each from its own seed, then a new restoration run that starts
            # from the restorer's best checkpoint and is judged by all of them (with the label term if weighted).
            critics = [best_checkpoint(critic)]
            for number in range(2, options.tune_critics + 1):
                name = f"{CRITIC_RUN}{number}"
                fit_recogniser(CRITIC, name, overlays=False, seed_offset=EXTRA_CRITIC_SEED_STEP * number)
                critics.append(best_checkpoint(folder / name))
            tuned = folder / TUNED_RUN
            followers = [folder / name for name in (CALIBRATED_RUN, *sorted(behind_restorer), JOINT_RUN)]
            decay_epochs = getattr(options, "tune_decay_epochs", 0)
            refuse_stale_followers(tuned, followers, tune_epochs)
            fit(
                tuned,
                [
                    *shared,
                    f"--trainer.max_epochs={tune_epochs}",
                    f"--model.init_args.initial_checkpoint={best_checkpoint(restorer_folder)}",
                    f"--model.init_args.recogniser_critic=[{', '.join(str(c) for c in critics)}]",
                    f"--model.init_args.label_weight={options.tune_label_weight}",
                    f"--model.init_args.lr_decay_epochs={decay_epochs}",
                ],
                extend_to=tune_epochs,  # a finished fine-tuning of fewer epochs continues (--tune-epochs raised)
                decay_epochs=decay_epochs,
            )
            restorer_folder = tuned
        if calibrate:
            calibrated = folder / CALIBRATED_RUN
            if run_state(calibrated, condition=None) != "finished":
                candidates = [restorer_folder]
                if tune_epochs and (last := read_run_record(restorer_folder).get("last_checkpoint")):
                    candidates.append(restorer_folder / last)  # the fine-tuning's end point competes with its best
                run(
                    [
                        "calibrate-restorer",
                        *(f"--restorer={candidate}" for candidate in candidates),
                        f"--recogniser={folder / (CRITIC_RUN if options.recogniser_config else CRITIC)}",
                        f"--split={options.validation_split}",
                        f"--output={calibrated}",
                        "--overwrite",  # a calibration interrupted before its run.json
                    ]
                )
            restorer_folder = calibrated
    if only == "restorer":
        return folder
    for name in sorted(behind_restorer):
        if only in (None, name):
            fit_recogniser(name)
    if JOINT_RUN in RECOGNISERS and not (data_config or restorer_run) and only in (None, JOINT_RUN):
        fit_recogniser(JOINT_RUN)  # stage 3: SynthAffect's targets, its seed's own restorer
    return folder


def evaluated_restorer(calibrated: bool, tuned: int | bool) -> str:
    """The run folder (in a seed's folder) of the restorer that is evaluated and that stage 2 loads."""
    return CALIBRATED_RUN if calibrated else TUNED_RUN if tuned else RESTORER_RUN


def joint_loss_weights(restoration_config: Path, overlays: list[Path] | None = None) -> dict[str, float]:
    """The restorer's loss weights that the joint fine-tuning keeps, from ``restoration_config`` (``model.init_args``)
    and the ``overlays`` composed after it (a later file's weight replaces an earlier one's)."""
    weights: dict[str, float] = {}
    for config in (restoration_config, *(overlays or [])):
        loaded = yaml.safe_load(Path(config).read_text()) or {}
        arguments = (loaded.get("model") or {}).get("init_args") or {}
        weights.update({k: float(arguments[k]) for k in JOINT_LOSS_WEIGHTS if k in arguments})
    return weights


def evaluation_spec(
    out: Path,
    split_root: Path,
    seeds: list[int],
    restorer_run: Path | None = None,
    resamples: int = 2000,
    restorer_name: str = RESTORER_RUN,
    selective: dict[str, float] | None = None,
) -> BenchmarkSpec:
    """The package evaluation's spec (``mfer occlusion-benchmark``) for this script's run folders.

    Every recogniser of :data:`RECOGNISERS` on its conditions (with every fill of :data:`FILLS`); the recoveries of
    each restored pipeline against its own recogniser (R+restorer and R+mask against R); and the comparisons of
    R-clean's blind restoration (and R-clean+'s and R-aug+'s, when trained) with R-aug, R-occ, R+mask, R-aug+ and
    R-mask+ on occluded faces and with each fill behind the same masks.
    Each seed's restorer is its run folder ``restorer_name`` (:func:`evaluated_restorer`), unless ``restorer_run``
    names one for every seed. ``selective`` (recogniser label → largest predicted occluded share restored, chosen on
    validation faces by :func:`choose_selective`) adds those recognisers' ``restored_selective`` condition, compared
    with their plain restoration, their occluded faces and the occlusion-robust recognisers.
    """
    selective = selective or {}
    recognisers = [
        {
            "label": r.label,
            "conditions": list(r.conditions) + ([SELECTIVE_CONDITION] if r.label in selective else []),
            **({"restores": True, "reference": RECOGNISERS[r.reference].label} if r.reference else {}),
            **({"max_occluded_fraction": selective[r.label]} if r.label in selective else {}),
        }
        for r in RECOGNISERS.values()
    ]
    label = {name: r.label for name, r in RECOGNISERS.items()}
    clean_trained = [name for name in (CRITIC, *INDEPENDENT) if name in RECOGNISERS]
    # Every pipeline with restoration against the occlusion-robust recognisers without it ...
    candidates = [f"{label[name]} restored" for name in clean_trained]
    candidates += [f"{label[name]} occluded" for name in ("R_restorer", JOINT_RUN) if name in RECOGNISERS]
    robust = [f"{label[name]} occluded" for name in ("R_aug", "R_occ", "R_mask") if name in RECOGNISERS]
    continued = [name for name in CONTINUED if name in RECOGNISERS]
    restoring = [name for name in continued if "restored" in RECOGNISERS[name].conditions]  # R-clean+, R-aug+
    candidates += [f"{label[name]} restored" for name in restoring]
    robust += [f"{label[name]} occluded" for name in continued if name != "R_clean_cont"]  # R-aug+, R-mask+
    candidates += [f"{chosen} {SELECTIVE_CONDITION}" for chosen in selective]
    pairs = [(candidate, baseline) for candidate in candidates for baseline in robust]
    for chosen in selective:  # restoring only the faces hidden up to the share against restoring all and none
        pairs += [
            (f"{chosen} {SELECTIVE_CONDITION}", f"{chosen} {condition}") for condition in ("restored", "occluded")
        ]
    # ... the generator against every trivial fill behind the same masks, for the recognisers that read restorations ...
    filled = [*clean_trained, *restoring]
    pairs += [(f"{label[n]} restored", f"{label[n]} restored_{fill}") for n in filled for fill in FILLS]
    # ... and what restoration costs where nothing is occluded.
    pairs += [(f"{label[name]} clean", f"{label['R']} clean") for name in ("R_restorer", JOINT_RUN) if name in label]
    pairs += [(f"{label[name]} clean_restored", f"{label[name]} clean") for name in filled]
    seed_runs = [
        {
            "seed": seed,
            "restorer": str(restorer_run or out / f"seed{seed}" / restorer_name),
            "runs": {r.label: str(out / f"seed{seed}" / name) for name, r in RECOGNISERS.items()},
        }
        for seed in seeds
    ]
    data = {
        "title": "Occluded faces: clean vs occluded vs restored (benchmarks/occlusion_restoration.py)",
        "split": str(split_root),
        "fills": list(FILLS),
        "resamples": resamples,
        "recognisers": recognisers,
        "seeds": seed_runs,
        "comparisons": [{"candidate": c, "baseline": b} for c, b in dict.fromkeys(pairs)],  # each pair once
    }
    return parse_spec(data, out)


def selective_validation_spec(
    out: Path, validation_split: Path, seeds: list[int], restorer_run: Path | None, restorer_name: str
) -> BenchmarkSpec:
    """Every recogniser that reads restored faces, on the validation split's occluded and restored faces only."""
    restoring = {name: r for name, r in RECOGNISERS.items() if "restored" in r.conditions}
    data = {
        "title": "Selective restoration's share, chosen on validation faces (benchmarks/occlusion_restoration.py)",
        "split": str(validation_split),
        "resamples": SELECTIVE_VALIDATION_RESAMPLES,
        "recognisers": [{"label": r.label, "conditions": ["occluded", "restored"]} for r in restoring.values()],
        "seeds": [
            {
                "seed": seed,
                "restorer": str(restorer_run or out / f"seed{seed}" / restorer_name),
                "runs": {r.label: str(out / f"seed{seed}" / name) for name, r in restoring.items()},
            }
            for seed in seeds
        ],
    }
    return parse_spec(data, out)


def choose_selective(
    out: Path,
    validation_split: Path,
    seeds: list[int],
    restorer_run: Path | None,
    restorer_name: str,
    report_only: bool = False,
) -> dict[str, float]:
    """Each restoring recogniser's selective-restoration share, chosen on the validation occlusion split.

    Evaluates (or, with ``report_only``, re-reads) every recogniser that reads restored faces on the validation
    faces, occluded and restored, into ``<out>/selective-validation``, and keeps the share whose assembled pipeline
    scores the highest expression macro-F1 averaged over the seeds
    (:func:`~multimodal_fer.evaluation.selective_restoration.selective_scan`). Recognisers whose best is to restore
    every face (a share of 1) get none: their selective pipeline would be their plain restoration.
    """
    spec = selective_validation_spec(out, validation_split, seeds, restorer_run, restorer_name)
    summary = run_benchmark(
        spec, out / SELECTIVE_VALIDATION, report_only=report_only, report=lambda line: print(line, flush=True)
    )
    chosen = {label: entry["best"] for label, entry in (summary.get("selective") or {}).get("recognisers", {}).items()}
    print(f"[occlusion] selective restoration, largest share restored (validation faces): {chosen}", flush=True)
    return {label: share for label, share in chosen.items() if share < 1.0}


def data_root_of(config: Path | None, given: str | None) -> Path:
    """The recognisers' cache: ``--data-root``, else ``--data-config``'s ``data.init_args.root``, else SynthAffect's."""
    if given:
        return Path(given).resolve()
    if config is not None:
        root = ((yaml.safe_load(config.read_text()) or {}).get("data") or {}).get("init_args", {}).get("root")
        if root:
            return Path(root).resolve()
    return Path(DEFAULT_DATA_ROOT).resolve()


@torch.no_grad()
def example_figure(restorer_folder: Path, split_root: Path, output: Path, per_kind: int = 2) -> None:
    """Draw occluded | mask used | restored (blind) | clean for the first faces of every kind in the split."""
    from torchvision.utils import save_image

    from multimodal_fer.callbacks.restoration_grid import restoration_grid
    from multimodal_fer.datamodules.device_transforms import face_statistics, normalize_face
    from multimodal_fer.models.restoration import load_restorer
    from multimodal_fer.preprocessing.cache import CacheReader
    from multimodal_fer.standardization import unit_range_face

    restorer = load_restorer(best_checkpoint(restorer_folder))
    split = CacheReader(split_root)
    types = np.asarray(split.array("occlusion_type"))
    rows = np.concatenate([np.flatnonzero(types == kind)[:per_kind] for kind in np.unique(types)])
    occluded_u8 = torch.from_numpy(np.array(split.array("face")[rows]))
    statistics_occluded = face_statistics(occluded_u8)
    out = restorer(normalize_face(occluded_u8, statistics_occluded))
    grid = restoration_grid(
        occluded_u8.float() / 255.0,
        out["mask"],
        unit_range_face(out["restored"], statistics_occluded),
        torch.from_numpy(np.array(split.array("face_clean")[rows])).float() / 255.0,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, output)
    print(f"[occlusion] example figure: {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/occlusion_benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--data-root",
        default=None,
        help=f"the recognisers' cache (default: the --data-config's root, else {DEFAULT_DATA_ROOT})",
    )
    parser.add_argument(
        "--data-config",
        default=None,
        metavar="YAML",
        help="a data set's FER config (configs/data/rafdb.yaml) composed after the quickstart for every recogniser, "
        "its preparation and its occlusion split; the restorer stays SynthAffect's (or --restorer-run)",
    )
    parser.add_argument(
        "--restoration-data-root",
        default=DEFAULT_DATA_ROOT,
        help="SynthAffect cache the restorer trains on with --data-config (without it: --data-root)",
    )
    parser.add_argument(
        "--own-faces",
        action="store_true",
        help="with --data-config: each seed's restorer trains on that data set's own faces, synthetic occluders "
        "drawn on them (configs/restoration/overlays/own_faces.yaml), instead of on SynthAffect",
    )
    parser.add_argument(
        "--restorer-run",
        default=None,
        metavar="FOLDER",
        help="reuse this finished restoration run folder for every seed instead of training one per seed",
    )
    parser.add_argument("--fer-epochs", type=int, default=None, help="override the recogniser's epochs")
    parser.add_argument("--restoration-epochs", type=int, default=None, help="override the restorer's epochs")
    parser.add_argument(
        "--continue-epochs",
        type=int,
        default=0,
        help="also train R-clean+, R-aug+ and R-mask+ (runs R_clean_cont, R_aug_cont, R_mask_cont): R-clean's face "
        "encoder trained this many more epochs, on clean faces, with R-aug's occlusion augmentation, or with it as a "
        "mask-aware recogniser behind the restorer's mask network; 0 (default) does not",
    )
    parser.add_argument(
        "--restoration-config",
        type=Path,
        default=RESTORATION_CONFIG,
        metavar="YAML",
        help="the restorer's config (configs/restoration/synthaffect_long.yaml: the long recipe of issue 18)",
    )
    parser.add_argument(
        "--restoration-overlay",
        type=Path,
        action="append",
        default=[],
        metavar="YAML",
        help="a config composed after --restoration-config for the restorer and its fine-tuning (repeatable; e.g. "
        "configs/restoration/overlays/reads_expression.yaml: the generator that reads the expression)",
    )
    parser.add_argument(
        "--joint-epochs",
        type=int,
        default=10,
        help="epochs of R+joint: R+restorer and its restorer fine-tuned together (face_restorer_joint.yaml)",
    )
    parser.add_argument(
        "--guided", action="store_true", help="R-clean, frozen, is the restorer's critic (recogniser_critic)"
    )
    parser.add_argument(
        "--calibrate-masks",
        action="store_true",
        help="with --guided: choose each restorer's mask threshold and dilation by its critic on an occlusion split "
        "of the validation subjects (mfer calibrate-restorer) and evaluate (and train stage 2 behind) that copy",
    )
    parser.add_argument(
        "--tune-epochs",
        type=int,
        default=0,
        help="with --guided: fine-tune each seed's finished restorer for this many epochs in a new run "
        "(restoration_tuned, from its best checkpoint: model.init_args.initial_checkpoint), guided by --tune-critics "
        "critics, and evaluate (and calibrate, and train stage 2 behind) that one; 0 (default) does not. A larger "
        "count later continues a finished fine-tuning from its last checkpoint",
    )
    parser.add_argument(
        "--tune-critics",
        type=int,
        default=1,
        help="critics of the fine-tuning: the restorer's own and more of its setup from seeds s+2000, s+3000, ... "
        "(runs critic2, critic3, ...)",
    )
    parser.add_argument(
        "--tune-label-weight",
        type=float,
        default=0.0,
        help="label_weight of the fine-tuning: the critics' cross-entropy on restored faces against the true labels",
    )
    parser.add_argument(
        "--tune-decay-epochs",
        type=int,
        default=0,
        help="the fine-tuning's last N of its --tune-epochs decay both learning rates linearly towards zero "
        "(lr_decay_epochs, pix2pix's schedule); 0 (default) keeps them constant. A finished constant-rate fine-tuning "
        "of at most --tune-epochs minus N epochs continues into it",
    )
    parser.add_argument(
        "--fills",
        nargs="*",
        default=FILLS,
        choices=list(TRIVIAL_FILLS),
        help="trivial fills evaluated behind the restorer's masks (none: --fills with no names)",
    )
    parser.add_argument(
        "--recogniser-config",
        action="append",
        default=[],
        metavar="YAML",
        help="an overlay composed into every recogniser's fit after the face-only one, e.g. "
        "configs/overlays/face_recipe.yaml (repeatable; use another --out, finished runs are reused)",
    )
    parser.add_argument(
        "--only",
        default=None,
        nargs="+",
        metavar="PART",
        help="train only these parts of each seed, in the order given, and stop before the evaluation: 'recognisers' "
        "(those that do not need "
        "the restorer), 'restorer' (with its critic), or one recogniser's run folder name (R_clean, R, R_occ, R_aug, "
        "R_clean_other; R_clean_cont and R_aug_cont once R_clean is finished; R_restorer, R_mask, R_mask_cont and "
        "R_joint once the restorer is finished, R_mask_cont once R_clean is, R_joint once R_restorer is); processes "
        "with one part each share a seed's work, then a run without --only trains the rest and evaluates; several "
        "parts in a row make one resumable chain (--only restorer R_clean R_aug_cont ...)",
    )
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws of the test subjects")
    parser.add_argument("--report-only", action="store_true", help="rebuild the tables from the saved predictions")
    parser.add_argument("--figure", default=None, help="also draw restored examples of the first seed to this PNG")
    parser.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="also copy the summary and the spec into DIR with each seed's predictions reduced to decisions (the "
        "same tables from files a tenth of the size, to publish, e.g. benchmarks/results/occlusion)",
    )
    args = parser.parse_args()
    if args.guided and args.restorer_run:
        parser.error("--guided trains each seed's restorer with R-clean as its critic; --restorer-run reuses one")
    if args.calibrate_masks and not args.guided:
        parser.error("--calibrate-masks judges the mask settings with the restorer's critic: add --guided")
    if args.tune_epochs < 0 or args.tune_critics < 1 or args.tune_label_weight < 0:
        parser.error("--tune-epochs and --tune-label-weight cannot be negative, --tune-critics is at least 1")
    if not 0 <= args.tune_decay_epochs <= args.tune_epochs:
        parser.error("--tune-decay-epochs counts the last of the --tune-epochs epochs: from 0 to --tune-epochs")
    if args.tune_epochs and not args.guided:
        parser.error("--tune-epochs fine-tunes the restorer with recogniser critics: add --guided")
    if not args.tune_epochs and (args.tune_critics > 1 or args.tune_label_weight):
        parser.error("--tune-critics and --tune-label-weight set the fine-tuning: add --tune-epochs N")
    if args.continue_epochs < 0:
        parser.error("--continue-epochs counts epochs: 0 (none) or more")
    if args.guided:
        RECOGNISERS.update(INDEPENDENT)
    if args.continue_epochs:
        RECOGNISERS.update(CONTINUED)
    if args.own_faces and (not args.data_config or args.restorer_run):
        parser.error(
            "--own-faces trains each seed's restorer on the --data-config data set: give --data-config, not "
            "--restorer-run"
        )
    if args.data_config or args.restorer_run:  # stage 3 needs SynthAffect's clean faces and its seed's own restorer
        RECOGNISERS.pop(JOINT_RUN)
    parts = ["recognisers", "restorer", *RECOGNISERS]
    unknown = [part for part in args.only or [] if part not in parts]
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: not a part of this benchmark; choose from {', '.join(parts)}")
    FILLS[:] = args.fills
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_config = Path(args.data_config).resolve() if args.data_config else None
    args.data_config = data_config
    args.restorer_run = Path(args.restorer_run).resolve() if args.restorer_run else None
    data_root = data_root_of(data_config, args.data_root)
    args.restoration_data_root = Path(args.restoration_data_root).resolve() if data_config is not None else data_root
    split_root = Path(f"{data_root}_occluded_test")
    args.validation_split = Path(f"{data_root}_occluded_val")
    data = ["--config", str(FER_CONFIG), *(("--config", str(data_config)) if data_config else ())]
    if not args.report_only:
        run(["prepare", *data, f"--data.init_args.root={data_root}"])
        if not (split_root / "manifest.json").exists():
            run(["occlusion-split", *data, f"--data.init_args.root={data_root}", "--split", "test"])
        if args.calibrate_masks and not (args.validation_split / "manifest.json").exists():
            run(["occlusion-split", *data, f"--data.init_args.root={data_root}", "--split", "val"])
        for part in args.only or [None]:  # one part after another, each for every seed
            for seed in args.seeds:
                train(seed, out, data_root, argparse.Namespace(**{**vars(args), "only": part}))
        if args.only:
            return
    if args.figure:  # needs the restorer and the split only
        restorer_name = evaluated_restorer(args.calibrate_masks, args.tune_epochs)
        example_figure(args.restorer_run or out / f"seed{args.seeds[0]}" / restorer_name, split_root, Path(args.figure))
    restorer_name = evaluated_restorer(args.calibrate_masks, args.tune_epochs)
    selective = {}
    if args.calibrate_masks:  # the validation split exists: choose each recogniser's selective share on it
        selective = choose_selective(
            out, args.validation_split, args.seeds, args.restorer_run, restorer_name, args.report_only
        )
    spec = evaluation_spec(out, split_root, args.seeds, args.restorer_run, args.resamples, restorer_name, selective)
    summary = run_benchmark(spec, out, report_only=args.report_only, report=lambda line: print(line, flush=True))
    print(markdown(summary))
    write_verdict(summary, out)
    if args.export:
        export(out, Path(args.export), args.seeds)


def write_verdict(summary: dict, out: Path) -> None:
    """Issue 18's claims read off the summary into ``<out>/verdict.md`` (:mod:`occlusion_verdict`); a summary
    without what a claim needs (e.g. ``--fills`` with no names leaves claim 1's second half unjudged, no R-clean
    restored leaves it all) is named and the file left out, the summary itself untouched."""
    try:
        text = verdict_markdown(summary, source=str(out / SUMMARY_JSON))
    except KeyError as error:
        print(f"[occlusion] no {VERDICT_MD}: {error.args[0]}", flush=True)
        return
    (out / VERDICT_MD).write_text(text)
    print(f"[occlusion] the issue's claims: {out / VERDICT_MD}", flush=True)


def export(out: Path, destination: Path, seeds: list[int]) -> None:
    """Copy ``out``'s summary and spec to ``destination``, with each seed's predictions as decisions only.

    A seed's mask calibration (``--calibrate-masks``) goes along as ``calibration-seed<s>.json``.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        compact_seed(predictions_path(out, seed), predictions_path(destination, seed))
        calibration = out / f"seed{seed}" / CALIBRATED_RUN / CALIBRATION_JSON
        if calibration.is_file():
            shutil.copy2(calibration, destination / f"calibration-seed{seed}.json")
    for name in (SPEC_JSON, SUMMARY_JSON, SUMMARY_MD):
        shutil.copy2(out / name, destination / name)
    if (out / VERDICT_MD).is_file():
        shutil.copy2(out / VERDICT_MD, destination / VERDICT_MD)
    validation = out / SELECTIVE_VALIDATION
    if (validation / SUMMARY_JSON).is_file():  # where the selective shares were chosen
        (destination / SELECTIVE_VALIDATION).mkdir(exist_ok=True)
        for seed in seeds:
            compact_seed(predictions_path(validation, seed), predictions_path(destination / SELECTIVE_VALIDATION, seed))
        for name in (SPEC_JSON, SUMMARY_JSON, SUMMARY_MD):
            shutil.copy2(validation / name, destination / SELECTIVE_VALIDATION / name)
    print(f"[occlusion] exported to {destination}")


if __name__ == "__main__":
    main()
