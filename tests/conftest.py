import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


def _threads_per_xdist_worker() -> int | None:
    """The cores each pytest-xdist worker may use (cores ÷ workers, at least 1); None outside xdist.

    Every worker would otherwise run torch's intra-op pool on all cores, so with ``-n auto`` each core serves as
    many OpenMP threads as there are workers, whose spin-waiting costs about a fifth of the suite's time on a
    2-core machine (2 min 17 s against 1 min 47 s for test_run_folders.py and test_restoration_pipeline.py).
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return None
    return max(1, (os.cpu_count() or 1) // int(workers))


# Set before torch is imported, so the worker's pool and every ``mfer`` process a test starts (DDP ranks included)
# inherit it; an explicit OMP_NUM_THREADS in the environment is kept.
if (_threads := _threads_per_xdist_worker()) is not None:
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


#: Data settings that make the quickstart data tiny: 6 subjects × 4 samples, 32 px, 0.5 s audio.
TINY_DATA: dict[str, object] = {
    "num_subjects": 6,
    "samples_per_subject": 4,
    "image_size": 32,
    "audio_seconds": 0.5,
    "physio_seconds": 4.0,
    "val_subjects": 2,
    "test_subjects": 2,
    "batch_size": 4,
    "num_workers": 0,
    "generation_workers": 1,
}


#: Frames per clip of the tiny clip cache (the clip presets ask for 8).
TINY_CLIP_FRAMES = 4


#: The command that runs ``mfer`` in a fresh process with this interpreter (tests of kills, DDP and resume).
MFER: tuple[str, ...] = (sys.executable, "-m", "multimodal_fer")


def tiny_data_args(root: Path, **overrides: object) -> list[str]:
    """Command-line overrides of :data:`TINY_DATA` with the cache at ``root``."""
    values = {"root": str(root), **TINY_DATA}
    values.update(overrides)
    return [f"--data.init_args.{key}={value}" for key, value in values.items()]


#: Experiment and run name of the tests' fits: their files land in ``run_folder(root_dir)``.
TEST_EXPERIMENT, TEST_RUN = "tests", "run"


def run_folder(root_dir: Path) -> Path:
    """The run folder of a fit started with :func:`tiny_trainer_args` (``root_dir``)."""
    return root_dir / TEST_EXPERIMENT / TEST_RUN


def run_args(root_dir: Path) -> list[str]:
    """Command-line settings that put a run's folder at :func:`run_folder` of ``root_dir``."""
    return [f"--run.root={root_dir}", f"--run.experiment={TEST_EXPERIMENT}", f"--run.name={TEST_RUN}"]


def tiny_trainer_args(root_dir: Path) -> list[str]:
    """A CPU trainer without a logger whose run folder is :func:`run_folder` of ``root_dir``."""
    return [*run_args(root_dir), "--trainer.logger=false", "--trainer.accelerator=cpu"]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SynthAffect cache shared by the CLI tests (built once per session)."""
    from multimodal_fer.cli import main

    root = tmp_path_factory.mktemp("cache") / "synthaffect"
    main(["prepare", "--config", str(CONFIGS / "quickstart.yaml"), *tiny_data_args(root)])
    return root


@pytest.fixture(scope="session")
def tiny_clip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SynthAffect cache in clip mode (:data:`TINY_CLIP_FRAMES` frames per clip), built with a clip preset."""
    from multimodal_fer.cli import main

    root = tmp_path_factory.mktemp("clip_cache") / "synthaffect_clips"
    configs = ["--config", str(CONFIGS / "quickstart.yaml"), "--config", str(CONFIGS / "encoders/face_clip_tcn.yaml")]
    main(["prepare", *configs, *tiny_data_args(root, clip_frames=TINY_CLIP_FRAMES)])
    return root
