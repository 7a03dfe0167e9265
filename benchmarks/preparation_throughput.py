"""Preparation throughput of real-data caches: images/s with the data set's boxes and landmarks, with face
detection, with aligned crops, and video frames/s, through the same ``FERDataModule.prepare`` users run.

Raw files are written in the data sets' own formats (AffectNet's CSV with boxes and 68 landmarks, RAF-DB's
aligned and original pictures, RAVDESS-named mp4 files) from one real photograph
(``skimage.data.astronaut()``), shifted, scaled and recompressed per image, so that detection has real work.

    python benchmarks/preparation_throughput.py --images 200 --videos 8 --workers 2

Every condition runs twice: in this process (``workers 0``: the steady per-sample cost, imports already paid) and
with ``--workers`` processes (what ``mfer prepare`` does; on a small set the workers' start-up, about ten seconds
of importing torch on two cores, weighs on the figure). Prints one JSON object per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from multimodal_fer.datamodules import FERDataModule
from multimodal_fer.datasets.affectnet import AffectNet
from multimodal_fer.datasets.rafdb import RAFDB
from multimodal_fer.datasets.ravdess import RAVDESS
from multimodal_fer.preprocessing.faces import MTCNNDetector
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing

AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)


def _scene(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, float, int, int]:
    """The photo scaled by 0.7-1.1 and pasted at a random place on a grey canvas of ``size`` (width, height)."""
    scale = float(rng.uniform(0.7, 1.1))
    side = int(photo.shape[0] * scale)
    resized = np.asarray(Image.fromarray(photo).resize((side, side)))
    width, height = size
    canvas = np.full((height, width, 3), int(rng.integers(60, 200)), dtype=np.uint8)
    x = int(rng.integers(0, max(1, width - side)))
    y = int(rng.integers(0, max(1, height - side)))
    patch = resized[: height - y, : width - x]
    canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return canvas, scale, x, y


def _landmarks68(points5: np.ndarray) -> np.ndarray:
    """68 iBUG points whose eye contours, nose tip and mouth corners sit on five detected points."""
    points = np.repeat(points5[2:3], 68, axis=0).astype(np.float64)
    left_eye, right_eye, nose, left_mouth, right_mouth = points5
    points[36:42] = right_eye + np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]])
    points[42:48] = left_eye + np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]])
    points[30], points[48], points[54] = nose, right_mouth, left_mouth
    return points


def write_image_sets(root: Path, count: int, seed: int = 0) -> None:
    """AffectNet-format and RAF-DB-format folders of ``count`` images each."""
    import skimage.data

    photo = skimage.data.astronaut()
    detection = MTCNNDetector().detect(photo)[0]  # where the face is in the photo, to write true boxes
    rng = np.random.default_rng(seed)
    affectnet = root / "affectnet"
    (affectnet / "Manually_Annotated_file_lists").mkdir(parents=True)
    rafdb = root / "rafdb" / "basic"
    for folder in (rafdb / "EmoLabel", rafdb / "Image" / "aligned", rafdb / "Image" / "original"):
        folder.mkdir(parents=True)
    rows, labels = [AFFECTNET_HEADER], []
    for i in range(count):
        scene, scale, x, y = _scene(photo, rng, (640, 480))
        box = np.array(detection.box) * scale + np.array([x, y, 0, 0])
        points = detection.points * scale + np.array([x, y])
        name = f"{i % 10}/{i:06d}.jpg"
        (affectnet / "Manually_Annotated_Images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene).save(affectnet / "Manually_Annotated_Images" / name, quality=90)
        landmarks = ";".join(f"{v:.2f}" for v in _landmarks68(points).reshape(-1))
        box_text = ",".join(str(int(round(v))) for v in box)
        rows.append(f"{name},{box_text},{landmarks},{i % 8},0.1,0.2")
        split = "train" if i < count * 0.8 else "test"
        stem = f"{split}_{i:05d}"
        Image.fromarray(scene).save(rafdb / "Image" / "original" / f"{stem}.jpg", quality=90)
        crop = np.asarray(Image.fromarray(scene).crop(tuple(int(v) for v in (*box[:2], *(box[:2] + box[2:])))))
        Image.fromarray(crop).resize((100, 100)).save(rafdb / "Image" / "aligned" / f"{stem}_aligned.jpg", quality=90)
        labels.append(f"{stem}.jpg {i % 7 + 1}")
    training = "\n".join(rows[: 1 + int(count * 0.8)]) + "\n"
    validation = "\n".join([rows[0], *rows[1 + int(count * 0.8) :]]) + "\n"
    (affectnet / "Manually_Annotated_file_lists" / "training.csv").write_text(training)
    (affectnet / "Manually_Annotated_file_lists" / "validation.csv").write_text(validation)
    (rafdb / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(labels) + "\n")


def write_videos(root: Path, count: int, seconds: float, fps: int, seed: int = 0) -> int:
    """RAVDESS-named audio-visual mp4 files (640x360 H.264 + AAC); returns the number of video frames."""
    import av
    import skimage.data

    rng = np.random.default_rng(seed)
    photo = skimage.data.astronaut()
    frames_total = 0
    for i in range(count):
        actor = i % 6 + 1
        folder = root / "ravdess" / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"01-01-{i % 8 + 1:02d}-01-01-{i // 6 % 2 + 1:02d}-{actor:02d}.mp4"
        scene, *_ = _scene(photo, rng, (640, 360))
        with av.open(str(path), "w") as container:
            video = container.add_stream("h264", rate=fps)
            video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
            audio = container.add_stream("aac", rate=48000)
            for t in range(int(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(np.roll(scene, t, axis=1), format="rgb24")
                for packet in video.encode(frame):
                    container.mux(packet)
                frames_total += 1
            for packet in video.encode():
                container.mux(packet)
            wave = 0.2 * np.sin(2 * np.pi * 200 * np.arange(int(seconds * 48000)) / 48000)
            samples = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None], format="fltp", layout="mono")
            samples.sample_rate = 48000
            for packet in [*audio.encode(samples), *audio.encode()]:
                container.mux(packet)
    return frames_total


def measure(name: str, datamodule: FERDataModule, unit_count: int, unit: str) -> dict:
    """Prepare a cache from scratch and report samples (or frames) per second."""
    started = time.perf_counter()
    reader = datamodule.prepare()
    seconds = time.perf_counter() - started
    summary = datamodule.summary()
    return {
        "condition": name,
        "samples": reader.num_samples,
        "usable": summary.get("usable"),
        "failures": summary.get("failures"),
        "seconds": round(seconds, 2),
        f"{unit}_per_second": round(unit_count / seconds, 1),
        "workers": datamodule.preparation_workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--video-seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--clip-frames", type=int, default=8)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfer_prep_bench_"))
    try:
        write_image_sets(work / "raw", options.images)
        video_frames = write_videos(work / "raw", options.videos, options.video_seconds, fps=25)
        preprocessing = MediaPreprocessing(image_size=options.image_size)
        clips = MediaPreprocessing(image_size=options.image_size, clip_frames=options.clip_frames, audio_seconds=3.0)
        images = options.images
        conditions = [
            ("AffectNet format, 68 landmarks (alignment)", AffectNet(), "affectnet", preprocessing, images),
            ("AffectNet format, face boxes (crop)", AffectNet(alignment="box"), "affectnet", preprocessing, images),
            ("RAF-DB format, aligned crops (resize)", RAFDB(images="aligned"), "rafdb", preprocessing, images),
            ("RAF-DB format, originals (MTCNN detection)", RAFDB(images="original"), "rafdb", preprocessing, images),
            (
                f"RAVDESS format, 640x360 H.264 mp4 ({options.clip_frames}-frame clip + audio)",
                RAVDESS(),
                "ravdess",
                clips,
                video_frames,
            ),
        ]  # fmt: skip
        results = []
        for workers in (0, options.workers):
            for name, adapter, folder, settings, count in conditions:
                datamodule = FERDataModule(
                    dataset=adapter,
                    raw_root=str(work / "raw" / folder),
                    root=str(work / "cache" / f"{len(results)}"),
                    preprocessing=settings,
                    preparation_workers=workers,
                    num_workers=0,
                )
                unit = "video_frames" if folder == "ravdess" else "images"
                results.append(measure(name, datamodule, count, unit))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for result in results:
        print(json.dumps(result))
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| condition | samples | workers | usable | seconds | throughput |")
    print("|---|---|---|---|---|---|")
    for r in results:
        rate = r.get("images_per_second") or r.get("video_frames_per_second")
        unit = "images/s" if "images_per_second" in r else "video frames/s"
        print(
            f"| {r['condition']} | {r['samples']} | {r['workers']} | {r['usable']} | {r['seconds']} | {rate} {unit} |"
        )


if __name__ == "__main__":
    main()
