"""Write one results file per test condition: metrics, config, cache fingerprint, versions, seed, environment.

The file is ``results-<condition>.json`` in the run folder (:mod:`multimodal_fer.run_folder`): ``results-test.json``
for the plain test, ``results-test-withheld-audio.json`` with audio withheld, ``results-occluded.json`` on an
occlusion split, ... (:func:`test_condition`); a name already taken gets ``.2``, ``.3`` ..., so no test replaces
another's file. With ``predictions=True`` the writer also keeps every test sample's outputs and labels and writes
them beside the results file (``results-test.json`` → ``results-test.predictions.npz``), so statistics over samples
or subjects (:mod:`multimodal_fer.evaluation.subject_bootstrap`) can be computed later without running the model.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

import multimodal_fer
from multimodal_fer.callbacks.sample_gathering import as_numpy, gathered_by_index
from multimodal_fer.datamodules.base import FERData, FERDataModule
from multimodal_fer.metrics.aggregation import aggregate_metrics, aggregate_recordings, check_aggregation
from multimodal_fer.metrics.sequences import (
    POOLINGS,
    Pooling,
    SmoothingKernel,
    sequence_concordance,
    smooth_sequences,
    smoothing_kernel,
)
from multimodal_fer.run_folder import RunFolder, run_folder_of_checkpoint
from multimodal_fer.types import Aggregation

#: Schema version of results.json; evaluation code checks it.
RESULTS_SCHEMA_VERSION = 1
#: Batch fields kept per sample in the predictions file: cache index, subject and the labels.
PREDICTION_BATCH_FIELDS = ("index", "subject", "expr", "au", "va")
#: Head outputs kept per sample: expression logits, AU logits, affect dimensions.
PREDICTION_OUTPUT_FIELDS = ("expr", "au", "va")
#: Batch fields kept besides for the frame-level (sequence) scores: recording code and frame number.
SEQUENCE_BATCH_FIELDS = ("sequence", "frame")
#: Prefix of the recording-level metrics (``test/recording/expr/f1_macro``, ``test/recording/score``).
RECORDING_PREFIX = "test/recording"
#: How a recording's samples are merged, as results files record it.
RECORDING_MERGE = (
    "mean over the recording's samples of the class probabilities (softmax), AU probabilities (sigmoid) and affect "
    "values; the recording's label is the one its samples share"
)


def dataset_aggregation(datamodule: object) -> Aggregation:
    """The evaluation level a data module's data set declares (``"sample"`` for data modules without an adapter)."""
    adapter = getattr(datamodule, "adapter", None)
    return check_aggregation(str(getattr(adapter, "evaluation_aggregation", "sample")))


def test_condition(datamodule: object, checkpoint: str | Path | None, run_path: Path | None = None) -> str:
    """The name of a test condition, from the data module, the checkpoint and the run's own data.

    The data module names itself (``test``, ``test-withheld-audio``, ``occluded-sunglasses``: its
    ``test_condition`` attribute, else ``test``); ``-on-<cache folder>`` follows a ``test...`` condition when the
    run was fitted on another cache (its ``run.json`` records the fit's ``data_root``: a second cohort, say), and
    ``-last`` when a ``last*.ckpt`` is tested.

    Args:
        datamodule: the test's data module.
        checkpoint: the tested checkpoint (None: the weights in memory).
        run_path: the run folder (None: no comparison with the fit's data).
    """
    condition = str(getattr(datamodule, "test_condition", None) or "test")
    root = getattr(datamodule, "root", None)
    if run_path is not None and root is not None and condition.startswith("test"):
        try:
            fitted_on = json.loads((Path(run_path) / "run.json").read_text()).get("data_root")
        except (FileNotFoundError, json.JSONDecodeError):
            fitted_on = None
        if fitted_on and Path(fitted_on).resolve() != Path(root).resolve():
            condition += f"-on-{Path(root).name}"
    if checkpoint and Path(checkpoint).stem.startswith("last"):
        condition += "-last"
    return condition


def predictions_path(results_path: Path) -> Path:
    """Where a results file's per-sample predictions go: ``results-test.json`` → ``results-test.predictions.npz``."""
    return results_path.with_name(f"{results_path.stem}.predictions.npz")


def git_revision(path: Path | None = None) -> dict[str, Any]:
    """The git commit of the package source (or of ``path``), and whether the work tree has changes.

    Returns:
        ``{"sha": str | None, "dirty": bool | None}``; None where git or the repository is unavailable.
    """
    where = path or Path(multimodal_fer.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(status)}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    return json_safe(value)


def json_safe(value: Any) -> Any:
    """The value with every NaN and infinity replaced by None, so that results files are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def runtime_environment(trainer: pl.Trainer) -> dict[str, Any]:
    """What changes a run's figures besides its config and seed: versions, device, threads, determinism."""
    import importlib.metadata

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    device = "cpu"
    if torch.cuda.is_available() and type(trainer.accelerator).__name__ == "CUDAAccelerator":
        device = torch.cuda.get_device_name(trainer.strategy.root_device)
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "libraries": {name: version(name) for name in ("numpy", "torchaudio", "torchmetrics", "timm", "jsonargparse")},
        "devices": trainer.num_devices,
        "world_size": trainer.world_size,
        "accelerator": type(trainer.accelerator).__name__,
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch chose (AVX2, AVX512...)
        "precision": str(trainer.precision),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_environment": {
            name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        },
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "dataloader_workers": _loader_workers(trainer),
    }


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux; the platform's description elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loader_workers(trainer: pl.Trainer) -> int | None:
    datamodule = getattr(trainer, "datamodule", None)
    workers = getattr(datamodule, "num_workers", None)
    return int(workers) if isinstance(workers, int) else None


class ResultsWriter(Callback):
    """Writes ``results-<condition>.json`` when a test run ends (global rank 0 only).

    The file goes into the run folder (the tested checkpoint's, else the one the command-line interface chose),
    else beside the tested checkpoint, else into the trainer's log folder; a name already taken gets ``.2``, ``.3``
    ... The command-line interface fills :attr:`config` with the resolved configuration and :attr:`run_folder`.

    With ``predictions`` it also writes every test sample once (padding repeats of a distributed sampler are
    dropped by cache index, after gathering from all processes) to :func:`predictions_path`: arrays
    ``index`` (N,), ``subject`` (N,) where the batches carry it, the labels ``target_expr`` (N,),
    ``target_au`` (N, K), ``target_va`` (N, D), the outputs ``output_expr`` (N, C) logits, ``output_au``
    (N, K) logits, ``output_va`` (N, D), and ``label_space`` (the label space as a JSON string); samples
    sorted by cache index. ``results.json`` then names the file under ``"predictions"``.

    **Frame-level scores** (``sequence_pooling`` set; frame-labelled recordings such as RECOLA's): the affect
    predictions are also scored as sequences (:mod:`multimodal_fer.metrics.sequences`), each sample placed by the
    ``sequence`` and ``frame`` its batch carries: ``test/va_frames/ccc_<dimension>`` is the CCC of the raw frame
    predictions with the chosen pooling (over all frames concatenated, or per recording then averaged), and with
    ``smoothing`` also ``test/va_smoothed/ccc_<dimension>``, the same after smoothing each recording's predictions
    over ``smoothing_width`` frames, side by side in ``metrics``; ``"sequence_scores"`` records the settings and
    counts. The epoch metrics (``test/va/ccc_*``) are untouched.

    **Aggregation level** (:mod:`multimodal_fer.metrics.aggregation`): ``aggregation`` (None: the data set's
    :attr:`~multimodal_fer.datasets.base.DatasetAdapter.evaluation_aggregation`) names the headline level. At
    ``"recording"`` the test samples are gathered from every process (each once), merged per recording (the cache's
    ``sequence``) and scored again: ``test/recording/{task}/{metric}`` and ``test/recording/score`` sit beside the
    sample-level ``test/...`` metrics. ``"aggregation"`` in the file records the headline level, its metric
    prefix and score, whether the data set or the config chose it, and the counts of recordings and samples.

    Args:
        filename: name of the results file (None: ``results-<condition>.json``).
        condition: name of the test condition (None: :func:`test_condition`).
        predictions: also write the per-sample predictions file.
        sequence_pooling: ``"concat"`` or ``"per_sequence_mean"``: add the frame-level scores (None: none).
        smoothing: ``"box"`` or ``"gaussian"``: add the smoothed frame-level scores (needs ``sequence_pooling``).
        smoothing_width: the smoothing window in frames (odd; σ = width / 4 for the Gaussian).
        aggregation: ``"sample"`` or ``"recording"``: the headline evaluation level (None: the data set's default).
    """

    def __init__(
        self,
        filename: str | None = None,
        condition: str | None = None,
        predictions: bool = False,
        sequence_pooling: Pooling | None = None,
        smoothing: SmoothingKernel | None = None,
        smoothing_width: int = 1,
        aggregation: Aggregation | None = None,
    ) -> None:
        if aggregation is not None:
            check_aggregation(aggregation)
        if sequence_pooling is not None and sequence_pooling not in POOLINGS:
            raise ValueError(f"sequence_pooling={sequence_pooling!r}: choose one of {list(POOLINGS)} or None.")
        if smoothing is not None:
            if sequence_pooling is None:
                raise ValueError(
                    "smoothing scores frame-level predictions: also set sequence_pooling (concat or "
                    "per_sequence_mean), e.g. --results.sequence_pooling=concat."
                )
            smoothing_kernel(smoothing, smoothing_width)  # refuses a bad kernel or width now, not after the test
        self.filename = filename
        self.condition = condition
        self.predictions = predictions
        self.sequence_pooling = sequence_pooling
        self.smoothing = smoothing
        self.smoothing_width = int(smoothing_width)
        self.run_folder: RunFolder | None = None
        self.config: dict[str, Any] | None = None
        self.seed: int | None = None
        self.aggregation = aggregation
        self.last_path: Path | None = None
        self._kept: list[dict[str, np.ndarray]] = []
        self._level: Aggregation = aggregation or "sample"

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Forget the samples of an earlier test run; settle the headline aggregation level."""
        self._kept = []
        self._level = self.aggregation or dataset_aggregation(getattr(trainer, "datamodule", None))

    @property
    def _keeps_samples(self) -> bool:
        return bool(self.predictions or self.sequence_pooling or self._level == "recording")

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's outputs and labels on the CPU for predictions, frame-level or recording-level scores."""
        if not self._keeps_samples:
            return
        if not isinstance(outputs, dict) or "index" not in batch:
            raise RuntimeError(
                "ResultsWriter(predictions=True, sequence_pooling or aggregation=recording) needs a test_step that "
                "returns its head outputs and batches with an 'index' field; "
                f"{type(pl_module).__name__} returned {type(outputs).__name__}. Set --results.predictions=false, "
                "--results.aggregation=sample and leave --results.sequence_pooling unset for this model."
            )
        by_recording = self.sequence_pooling or self._level == "recording"
        fields = PREDICTION_BATCH_FIELDS + (SEQUENCE_BATCH_FIELDS if by_recording else ())
        kept = {f"target_{k}" if k in PREDICTION_OUTPUT_FIELDS else k: batch[k] for k in fields if k in batch}
        kept.update({f"output_{k}": outputs[k] for k in PREDICTION_OUTPUT_FIELDS if k in outputs})
        self._kept.append({key: as_numpy(value) for key, value in kept.items()})

    def _gathered_predictions(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        """Every process's kept batches, concatenated, each cache index once, sorted by index."""
        return gathered_by_index(self._kept, trainer)

    def _sequence_scores(
        self, gathered: dict[str, np.ndarray], pl_module: pl.LightningModule
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Frame-level CCCs (raw, and smoothed where asked) of every affect dimension, and what they were made of.

        Raises:
            RuntimeError: batches without ``sequence``/``frame`` fields or samples outside any sequence, or no
                affect output.
        """
        missing = [k for k in ("sequence", "frame", "output_va", "target_va") if k not in gathered]
        if missing or np.any(gathered["sequence"] < 0):
            raise RuntimeError(
                "Frame-level scores (--results.sequence_pooling) need test samples that belong to recordings, "
                f"with affect outputs and labels; this test lacks {missing or ['a sequence for some samples']}. "
                "Use a frame-labelled data set (RECOLA, Aff-Wild2) or leave sequence_pooling unset."
            )
        dimensions = list(pl_module.label_space.dimensions) if hasattr(pl_module, "label_space") else []
        sequences, frames = gathered["sequence"], gathered["frame"]
        output, target = gathered["output_va"].astype(np.float64), gathered["target_va"].astype(np.float64)
        pooling = self.sequence_pooling
        assert pooling is not None
        raw = sequence_concordance(output, target, sequences, pooling)
        names = dimensions if len(dimensions) == raw.size else [str(k) for k in range(raw.size)]
        scores = {f"test/va_frames/ccc_{name}": float(value) for name, value in zip(names, raw, strict=True)}
        record: dict[str, Any] = {
            "pooling": pooling,
            "smoothing": self.smoothing,
            "smoothing_width": self.smoothing_width if self.smoothing else None,
            "sequences": int(np.unique(sequences).size),
            "frames": int(sequences.size),
        }
        if self.smoothing:
            smoothed = smooth_sequences(output, sequences, frames, self.smoothing, self.smoothing_width)
            values = sequence_concordance(smoothed, target, sequences, pooling)
            scores |= {f"test/va_smoothed/ccc_{name}": float(value) for name, value in zip(names, values, strict=True)}
        return scores, record

    def _recording_scores(
        self, gathered: dict[str, np.ndarray], pl_module: pl.LightningModule, datamodule: object
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Recording-level metrics (``test/recording/...``) of the gathered test samples, and their counts.

        Raises:
            RuntimeError: no test sample belongs to a recording, or the model gave no outputs to merge.
            ValueError: a recording whose labelled samples disagree (:func:`aggregate_recordings`).
        """
        if "sequence" not in gathered or not np.any(np.asarray(gathered["sequence"]) >= 0):
            raise RuntimeError(
                "Recording-level scores (aggregation=recording) need test samples that belong to recordings (the "
                "cache's 'sequence' field); this test has none. Use --results.aggregation=sample."
            )
        tasks = [k for k in PREDICTION_OUTPUT_FIELDS if f"output_{k}" in gathered and f"target_{k}" in gathered]
        outputs = {k: gathered[f"output_{k}"] for k in tasks}
        targets = {k: gathered[f"target_{k}"] for k in tasks}
        if not outputs:
            raise RuntimeError(
                f"{type(pl_module).__name__} gave no expr, au or va outputs with labels to merge per recording."
            )
        names = getattr(getattr(datamodule, "reader", None), "manifest", {}).get("sequences")
        merged = aggregate_recordings(gathered["sequence"], outputs, targets, names)
        scores = aggregate_metrics(merged, pl_module.label_space, RECORDING_PREFIX)
        record = {
            "prefix": RECORDING_PREFIX,
            "recordings": int(np.sum(merged.recordings >= 0)),
            "samples": int(np.asarray(gathered["sequence"]).size),
            "samples_outside_recordings": int(np.sum(np.asarray(gathered["sequence"]) < 0)),
            "merge": RECORDING_MERGE,
        }
        return scores, record

    def _target_folder(self, trainer: pl.Trainer) -> Path:
        if trainer.ckpt_path and (folder := run_folder_of_checkpoint(Path(trainer.ckpt_path))) is not None:
            return folder.path
        if self.run_folder is not None:
            return self.run_folder.path
        if trainer.ckpt_path:
            return Path(trainer.ckpt_path).resolve().parent
        checkpoint = trainer.checkpoint_callback
        dirpath = getattr(checkpoint, "dirpath", None)
        if dirpath:
            return Path(dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Collect the test metrics and write the file."""
        metrics = {k: _plain(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("test/")}
        datamodule = getattr(trainer, "datamodule", None)
        folder = self._target_folder(trainer)
        record = _run_record(folder)
        seed = _trained_seed(record)  # a run's checkpoint: the seed it trained with, whatever the test's
        if seed is None:
            seed = self.seed if self.seed is not None else os.environ.get("PL_GLOBAL_SEED")
        condition = self.condition or test_condition(datamodule, trainer.ckpt_path, folder)
        results = {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "condition": condition,
            "run": _run_description(record, folder),
            "metrics": metrics,
            "checkpoint": str(Path(trainer.ckpt_path).resolve()) if trainer.ckpt_path else None,
            "seed": int(seed) if seed is not None else None,
            "cache_fingerprint": datamodule.cache_fingerprint if isinstance(datamodule, FERData) else None,
            "data": _data_description(datamodule),
            "modalities": list(getattr(pl_module, "modalities", []) or []),
            "label_space": pl_module.label_space.to_dict() if hasattr(pl_module, "label_space") else None,
            "num_parameters": sum(p.numel() for p in pl_module.parameters()),
            "package_version": multimodal_fer.__version__,
            "git": git_revision(),
            "environment": runtime_environment(trainer),
            "config": self.config,
        }
        gathered = self._gathered_predictions(trainer) if self._keeps_samples else {}
        self._kept = []
        if self.sequence_pooling:
            scores, record = self._sequence_scores(gathered, pl_module)
            results["metrics"] = {**results["metrics"], **scores}
            results["sequence_scores"] = record
        aggregation: dict[str, Any] = {
            "headline": self._level,
            "headline_prefix": "test",
            "dataset_default": dataset_aggregation(datamodule),
            "chosen_by": "config" if self.aggregation is not None else "data set",
        }
        if self._level == "recording":
            scores, record = self._recording_scores(gathered, pl_module, datamodule)
            results["metrics"] = {**results["metrics"], **scores}
            aggregation |= {"headline_prefix": RECORDING_PREFIX, "recording": record}
        aggregation["headline_score"] = results["metrics"].get(f"{aggregation['headline_prefix']}/score")
        results["aggregation"] = aggregation
        predictions = {k: v for k, v in gathered.items() if k not in SEQUENCE_BATCH_FIELDS} if self.predictions else {}
        if not trainer.is_global_zero:
            return
        folder.mkdir(parents=True, exist_ok=True)
        path = _free_name(folder, self.filename or f"results-{condition}.json")
        if predictions:
            label_space = results["label_space"]
            target = predictions_path(path)
            tmp_npz = target.with_name(target.name + ".tmp.npz")
            np.savez(tmp_npz, **predictions, label_space=np.asarray(json.dumps(label_space)))
            os.replace(tmp_npz, target)
            results["predictions"] = target.name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(json_safe(results), indent=2, sort_keys=False, default=str, allow_nan=False))
        os.replace(tmp, path)
        self.last_path = path


def _free_name(folder: Path, filename: str) -> Path:
    """``folder/filename``, or ``<stem>.2<suffix>``, ``.3`` ... where the name is taken (by a file or predictions)."""
    stem, suffix = Path(filename).stem, Path(filename).suffix
    candidate, count = folder / filename, 2
    while candidate.exists() or predictions_path(candidate).exists():
        candidate = folder / f"{stem}.{count}{suffix}"
        count += 1
    return candidate


def _run_record(folder: Path) -> dict[str, Any] | None:
    """The ``run.json`` of the run folder the results go to, or None outside a run folder."""
    try:
        record = json.loads((folder / "run.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _trained_seed(record: dict[str, Any] | None) -> int | None:
    """The seed the run trained with (its ``run.json``), or None outside a run folder that records one.

    ``mfer test --ckpt_path best`` of a run trained with seed 1 writes seed 1, not the test command's own seed
    (0 unless given): ``mfer report`` pairs settings by this seed.
    """
    seed = (record or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _run_description(record: dict[str, Any] | None, folder: Path) -> dict[str, Any] | None:
    """Experiment, name and folder of the run the results belong to, and the commits its fit started from.

    ``fit_git`` is the commit the fit's first session started from and ``resumed_git`` those of its later sessions
    (``run.json``); the results file's own ``git`` is the commit checked out when it was written. None outside a run
    folder.
    """
    if record is None:
        return None
    return {
        "experiment": record.get("experiment"),
        "name": record.get("name"),
        "folder": str(folder.resolve()),
        "fit_git": record.get("git"),
        "resumed_git": record.get("resumed_git", []),
    }


def _data_description(datamodule: object) -> dict[str, Any] | None:
    """The data set and split protocol a test ran on (None for data modules outside the package's contract)."""
    if not isinstance(datamodule, FERDataModule):
        return None
    return {
        "dataset": datamodule.adapter.name,
        "root": str(datamodule.root),
        "protocol": datamodule.protocol.describe(),
        "modalities": list(datamodule.modalities),
        "withheld_modalities": list(datamodule.withheld_modalities),
        "test_corruption": datamodule.test_corruption.to_dict() if datamodule.test_corruption is not None else None,
        "test_subset": datamodule.subset.describe() if datamodule.subset is not None else None,
        # The data card's rule for showing faces: `mfer report` embeds restoration grids only where it is true.
        "face_media_allowed": bool(datamodule.face_media_allowed),
        # What the data set itself labels (the model's label space may be wider: a combined fit, label_space), and
        # the member's name in a combined data module: `mfer report` compares such results with single-data-set runs.
        "labels": datamodule.adapter.label_space.to_dict(),
        "member": datamodule.member_name,
    }
