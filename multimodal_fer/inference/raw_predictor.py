"""Predict expressions, AUs and valence/arousal on raw recordings with a trained checkpoint.

The checkpoint's run configuration (``config.yaml`` beside the checkpoint or in a folder above it) rebuilds the
model and its data module; raw files go through the same preprocessing as the data set's cache (face detection
and alignment at the trained crop size, audio at the trained rate and window), then through the data module's
device transform, so a model sees at prediction time what it saw in training.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimodal_fer.datamodules.base import FERDataModule
from multimodal_fer.datamodules.combined import CombinedDataModule
from multimodal_fer.datasets.base import RawSample
from multimodal_fer.datasets.synthaffect.adapter import SynthAffect
from multimodal_fer.errors import DataError
from multimodal_fer.inference.raw_inputs import RawInput, collect_inputs, raw_media
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing, MediaProcessor
from multimodal_fer.tasks.recogniser_loading import load_fer_run
from multimodal_fer.types import PRESENT_KEY

#: What the output says of a model trained only on generated data.
SYNTHETIC_WARNING = (
    "this checkpoint was trained only on SynthAffect: it is a model of generated faces, voices and signals, "
    "not of real people, and its predictions on real recordings mean little"
)


@dataclass
class LoadedRun:
    """A trained model with the data module whose preprocessing and device transform its inputs go through.

    For a run trained on several data sets (:class:`CombinedDataModule`) that is the first member that reads every
    raw modality the model has (face, audio); its labels are in the run's label space.
    """

    model: torch.nn.Module
    datamodule: FERDataModule
    trained_on: str
    generated: bool


def load_run(checkpoint: Path, config: Path | None = None, device: str = "cpu") -> LoadedRun:
    """Rebuild the model from its run's configuration (beside or above the checkpoint) with its weights.

    Args:
        checkpoint: a ``.ckpt`` written by ``mfer fit``.
        config: the run's configuration (None: found beside or above the checkpoint).
        device: where the model runs.
    """
    task, datamodule = load_fer_run(checkpoint, config)
    if isinstance(datamodule, CombinedDataModule):
        return _combined_run(task.to(device).eval(), datamodule)
    if not isinstance(datamodule, FERDataModule):
        raise DataError(f"The run's data module {type(datamodule).__name__} is not a FERDataModule.")
    return LoadedRun(task.to(device).eval(), datamodule, datamodule.adapter.name, datamodule.adapter.generated)


def _combined_run(model: torch.nn.Module, combined: CombinedDataModule) -> LoadedRun:
    """A combined fit's model with the member whose preprocessing reads every raw modality the model has.

    Raises:
        DataError: no member reads all of them (e.g. faces from one data set, voices from another).
    """
    raw = {m for m in combined.modalities if m in ("face", "audio")}
    members = combined.members
    reading = next((member for member in members.values() if raw <= set(member.modalities)), None)
    if reading is None:
        raise DataError(
            f"The run was trained on {', '.join(members)}, and none of them reads all of {sorted(raw)}, so no one "
            "preprocessing serves raw files; predict a prepared cache with `mfer predict --config <a member's data "
            "config> --data.init_args.label_space=<the run folder> --ckpt_path ...`."
        )
    trained_on = "combined: " + ", ".join(f"{name} ({member.adapter.name})" for name, member in members.items())
    return LoadedRun(model, reading, trained_on, all(member.adapter.generated for member in members.values()))


def preprocessing_of(datamodule: FERDataModule) -> MediaPreprocessing:
    """The media preprocessing a run's data went through (for generated data: the same crop size and audio)."""
    adapter = datamodule.adapter
    if not isinstance(adapter, SynthAffect):
        return datamodule.preprocessing
    return MediaPreprocessing(
        image_size=datamodule.image_size,
        audio_sample_rate=adapter.generation.audio_sample_rate,
        audio_seconds=adapter.generation.audio_seconds,
    )


def predict_raw(
    run: LoadedRun,
    inputs: list[str | Path],
    output: Path,
    per_frame: bool = False,
    frames_per_second: float = 2.0,
    batch_size: int = 16,
    device: str = "cpu",
    aligned: bool = False,
) -> dict[str, int]:
    """Predict every input and write one CSV row per sample (per frame of a video with ``per_frame``).

    A file that cannot be used gets a row with ``status=error`` and its reason; the rest are predicted. With
    ``aligned`` every image and frame is taken as an aligned face crop (RAF-DB's aligned faces, FER2013's 48-px
    crops, Aff-Wild2's cropped_aligned frames): resized to the model's crop size, no face searched for, as such
    data sets' crops are prepared.

    Returns:
        ``{"rows": ..., "predicted": ..., "errors": ...}``.
    """
    modalities = [m for m in run.datamodule.modalities if m in ("face", "audio")]
    if not modalities:
        raise DataError(f"The model uses {list(run.datamodule.modalities)}; raw prediction reads faces and audio only.")
    space = run.datamodule.label_space
    processor = MediaProcessor(preprocessing_of(run.datamodule), space, tuple(modalities), ["input"])
    items, problems = collect_inputs(list(inputs))
    rows: list[dict[str, Any]] = [_error_row(path, reason) for path, reason in problems]
    pending: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
    for item in items:
        for row, media in _samples_of(item, processor, per_frame, frames_per_second):
            if aligned and not isinstance(media, _Broken):
                media.face_aligned = True
            try:
                fields = processor(RawSample(key=item.name, subject="input", source=item.source), media, 0)
            except Exception as error:  # noqa: BLE001 - one bad file never stops the others
                rows.append({**row, **_error_row(item.source, getattr(error, "reason", None) or str(error))})
                continue
            pending.append((row, fields))
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        outputs = _predict_batch(run, [fields for _, fields in chunk], modalities, processor, device)
        for k, (row, fields) in enumerate(chunk):
            present = [m for j, m in enumerate(modalities) if fields["present"][j]]
            rows.append(
                {**row, "status": "ok", "reason": "", "modalities": "+".join(present), **_columns(outputs, k, space)}
            )
    rows.sort(key=lambda r: (r["source"], float(r.get("time_s") or 0.0)))
    _write_csv(output, rows, space, run)
    predicted = sum(1 for r in rows if r["status"] == "ok")
    return {"rows": len(rows), "predicted": predicted, "errors": len(rows) - predicted}


def _samples_of(item: RawInput, processor: MediaProcessor, per_frame: bool, rate: float) -> list[tuple[dict, Any]]:
    """One (row stub, raw media) per sample: the whole input, or one per sampled frame of its video."""
    wants_audio = "audio" in processor.modalities
    base = {"source": item.source, "frame": "", "time_s": ""}
    if not per_frame or item.video is None or item.image is not None:
        try:
            return [(base, raw_media(item, wants_audio=wants_audio))]
        except Exception as error:  # noqa: BLE001 - reported as the input's row
            return [(base, _Broken(error))]
    from multimodal_fer.media.video import read_video_frames

    try:
        video = read_video_frames(item.video, fps=rate)
    except Exception as error:  # noqa: BLE001
        return [(base, _Broken(error))]
    samples = []
    for index, time in enumerate(video.times):
        media = raw_media(item, frame=-1, audio_centre=float(time), wants_audio=wants_audio)
        media.video, media.image = None, video.frames[index]
        samples.append(({**base, "frame": index, "time_s": round(float(time), 3)}, media))
    return samples


class _Broken:
    """Stands in for media that could not be read; processing it raises the original error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        raise self.error


def _predict_batch(
    run: LoadedRun,
    samples: list[dict[str, np.ndarray]],
    modalities: list[str],
    processor: MediaProcessor,
    device: str,
) -> dict[str, np.ndarray]:
    """Stack processed samples into a batch, apply the data module's device transform, run the model.

    A sample without a modality gets zeros of the field's shape there and ``present=False``.
    """
    specs = {spec.name: spec for spec in processor.specs()}
    present = np.stack([s["present"] for s in samples])
    batch: dict[str, Any] = {PRESENT_KEY: {}}

    def stacked(name: str) -> torch.Tensor:
        spec = specs[name]
        empty = np.zeros(spec.shape, dtype=spec.dtype)
        return torch.from_numpy(np.stack([s.get(name, empty) for s in samples])).to(device)

    for j, modality in enumerate(modalities):
        if not present[:, j].any():
            continue
        batch[modality] = stacked(modality)
        batch[PRESENT_KEY][modality] = torch.from_numpy(present[:, j].copy()).to(device)
        if modality == "audio":
            batch["audio_lengths"] = stacked("audio_lengths").clamp_min(1)
    if not batch[PRESENT_KEY]:
        raise DataError("no sample of the batch has a modality the model reads")
    batch = run.datamodule.on_after_batch_transfer(batch, 0)
    with torch.no_grad():
        outputs = run.model(batch)
    result = {}
    if "expr" in outputs:
        result["expr"] = outputs["expr"].softmax(dim=-1).float().cpu().numpy()
    if "au" in outputs:
        result["au"] = outputs["au"].sigmoid().float().cpu().numpy()
    if "va" in outputs:
        result["va"] = outputs["va"].float().cpu().numpy()
    return result


def _columns(outputs: dict[str, np.ndarray], k: int, space: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if "expr" in outputs:
        probs = outputs["expr"][k]
        row["expression"] = space.expressions[int(np.argmax(probs))]
        row.update({f"p_{name}": round(float(p), 4) for name, p in zip(space.expressions, probs, strict=True)})
    if "au" in outputs:
        row.update({f"au{n}": round(float(p), 4) for n, p in zip(space.action_units, outputs["au"][k], strict=True)})
    if "va" in outputs:
        row.update({name: round(float(v), 4) for name, v in zip(space.dimensions, outputs["va"][k], strict=True)})
    return row


def _error_row(source: str, reason: str) -> dict[str, Any]:
    return {"source": source, "frame": "", "time_s": "", "status": "error", "reason": reason, "modalities": ""}


def _write_csv(path: Path, rows: list[dict[str, Any]], space: Any, run: LoadedRun) -> None:
    columns = ["source", "frame", "time_s", "status", "reason", "modalities"]
    if space.num_expressions:
        columns += ["expression", *[f"p_{n}" for n in space.expressions]]
    columns += [f"au{n}" for n in space.action_units] + list(space.dimensions) + ["trained_on"]
    trained_on = f"{run.trained_on} ({SYNTHETIC_WARNING})" if run.generated else run.trained_on
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**{c: "" for c in columns}, **_finite(row), "trained_on": trained_on})


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """Non-finite numbers written as empty cells, never as NaN."""
    return {k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
