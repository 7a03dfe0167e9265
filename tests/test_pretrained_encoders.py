"""Fusion models started from single-modality runs: encoder weights loaded, checked, optionally frozen."""

from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from multimodal_fer.cli import main
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders import FaceClipEncoder, FaceCNN, PhysioCNN
from multimodal_fer.models.fusion import AttentionFusion
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.tasks.encoder_initialisation import (
    PretrainedEncoderPolicy,
    load_pretrained_encoder,
    resolve_run_checkpoint,
)
from multimodal_fer.types import PRESENT_KEY, LabelSpace

from conftest import CONFIGS, run_folder, tiny_data_args, tiny_trainer_args

LABEL_SPACE = LabelSpace(expressions=("a", "b", "c"), action_units=(1, 2), dimensions=("valence", "arousal"))
FUSION = partial(AttentionFusion, d_model=8, num_heads=2, num_layers=1, dropout=0.0)


def _task(seed: int, face_widths: tuple[int, ...] = (4, 8), **options: object) -> MultitaskFERTask:
    torch.manual_seed(seed)
    encoders = {"face": FaceCNN(out_dim=8, widths=face_widths), "physio": PhysioCNN(out_dim=8, widths=(4,))}
    return MultitaskFERTask(encoders, LABEL_SPACE, fusion=FUSION, head_dropout=0.0, **options)


def _batch() -> dict[str, object]:
    generator = torch.Generator().manual_seed(0)
    return {
        "face": torch.randn(6, 3, 32, 32, generator=generator),
        "physio": torch.randn(6, 3, 64, generator=generator),
        PRESENT_KEY: {"face": torch.ones(6, dtype=torch.bool), "physio": torch.ones(6, dtype=torch.bool)},
        "expr": torch.tensor([0, 1, 2, 0, 1, 2]),
        "au": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        "va": torch.linspace(-0.9, 0.9, 12).view(6, 2),
    }


def _single_run_checkpoint(tmp_path: Path) -> tuple[MultitaskFERTask, Path]:
    """A trained-looking 'single-modality run' (its BN statistics moved) saved as a Lightning-style checkpoint."""
    source = _task(seed=1)
    source.train()
    source.training_step(_batch(), 0)  # moves BatchNorm running statistics away from their initial values
    path = tmp_path / "single.ckpt"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    return source, path


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_encoder_and_feature_norm_come_from_a_task_checkpoint(tmp_path: Path) -> None:
    source, path = _single_run_checkpoint(tmp_path)
    target = _task(seed=2)
    assert load_pretrained_encoder(target.model, "face", path) is True
    _assert_same(target.model.encoders["face"], source.model.encoders["face"])
    _assert_same(target.model.feature_norms["face"], source.model.feature_norms["face"])
    # Only the named modality changes: the physio encoder and the fusion keep their own initialisation.
    assert not torch.equal(target.model.encoders["physio"].fc.weight, source.model.encoders["physio"].fc.weight)
    assert not torch.equal(target.model.fusion.fusion_token, source.model.fusion.fusion_token)


def test_a_bare_encoder_state_dict_loads_without_the_feature_norm(tmp_path: Path) -> None:
    source = _task(seed=1)
    path = tmp_path / "face_encoder.pt"
    torch.save(source.model.encoders["face"].state_dict(), path)
    target = _task(seed=2)
    norm_before = {k: v.clone() for k, v in target.model.feature_norms["face"].state_dict().items()}
    assert load_pretrained_encoder(target.model, "face", path) is False
    _assert_same(target.model.encoders["face"], source.model.encoders["face"])
    for key, value in target.model.feature_norms["face"].state_dict().items():
        assert torch.equal(value, norm_before[key])


def test_weights_of_another_architecture_are_refused_by_name(tmp_path: Path) -> None:
    _, path = _single_run_checkpoint(tmp_path)
    wider = _task(seed=2, face_widths=(4, 16))
    with pytest.raises(DataError, match=r"do not fit.*wrong shape.*same encoder configuration"):
        load_pretrained_encoder(wider.model, "face", path)
    deeper = _task(seed=2, face_widths=(4, 8, 8))
    with pytest.raises(DataError, match="missing"):
        load_pretrained_encoder(deeper.model, "face", path)


def test_a_checkpoint_without_the_modality_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    physio_only = MultitaskFERTask({"physio": PhysioCNN(out_dim=8, widths=(4,))}, LABEL_SPACE, fusion=FUSION)
    path = tmp_path / "physio.ckpt"
    torch.save({"state_dict": physio_only.state_dict()}, path)
    with pytest.raises(DataError, match="holds no weights for the face encoder"):
        load_pretrained_encoder(_task(seed=2).model, "face", path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained_encoder(_task(seed=2).model, "face", tmp_path / "nowhere.ckpt")


def test_a_run_folder_resolves_to_its_one_best_checkpoint(tmp_path: Path) -> None:
    source, path = _single_run_checkpoint(tmp_path)
    run = tmp_path / "runs/single/face"
    nested = run / "multimodal-fer/abc123/checkpoints"  # where a W&B-logged run keeps them
    nested.mkdir(parents=True)
    (nested / "last.ckpt").write_bytes(b"not read")
    best = nested / "best-epoch=04.ckpt"
    best.write_bytes(path.read_bytes())
    assert resolve_run_checkpoint(run) == best
    target = _task(seed=2)
    load_pretrained_encoder(target.model, "face", run)
    _assert_same(target.model.encoders["face"], source.model.encoders["face"])
    (run / "best-epoch=09.ckpt").write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="holds 2 best-\\*.ckpt files.*Name the checkpoint file"):
        resolve_run_checkpoint(run)
    empty = tmp_path / "runs/single/audio"
    empty.mkdir()
    with pytest.raises(DataError, match="holds 0 best"):
        resolve_run_checkpoint(empty)

    with pytest.raises(ValueError, match=r"modalities \['audio'\] that have no encoder"):
        _task(seed=0, pretrained_encoders={"audio": "x.ckpt"})
    with pytest.raises(ValueError, match="pretrained_encoders is empty"):
        _task(seed=0, freeze_pretrained_encoders=True)


def test_frozen_encoders_stay_fixed_and_in_eval_mode_while_the_rest_trains(tmp_path: Path) -> None:
    source, path = _single_run_checkpoint(tmp_path)
    task = _task(seed=2, pretrained_encoders={"face": str(path)}, freeze_pretrained_encoders=True)
    task.load_pretrained_encoders()
    face, norm = task.model.encoders["face"], task.model.feature_norms["face"]
    optimizer = task.configure_optimizers()
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in [*face.parameters(), *norm.parameters()]}
    assert {id(p) for p in task.model.fusion.parameters()} <= optimised
    task.train()
    assert not face.training and not norm.training and task.model.fusion.training
    fusion_before = task.model.fusion.fusion_token.detach().clone()
    for _ in range(2):
        optimizer.zero_grad()
        task.training_step(_batch(), 0).backward()
        optimizer.step()
    _assert_same(face, source.model.encoders["face"])  # weights and BatchNorm statistics unchanged
    _assert_same(norm, source.model.feature_norms["face"])
    assert not torch.equal(task.model.fusion.fusion_token, fusion_before)
    # The physio encoder was not named, so it trains.
    assert task.model.encoders["physio"].training and task.model.encoders["physio"].fc.weight.requires_grad


def test_fit_starts_from_a_single_modality_run(tmp_path: Path, tiny_cache: Path) -> None:
    quickstart = str(CONFIGS / "quickstart.yaml")
    common = [*tiny_data_args(tiny_cache), "--trainer.max_epochs=1"]
    single_dir, fused_dir = tmp_path / "single", tmp_path / "fused"
    main(
        [
            "fit",
            "--config",
            quickstart,
            "--config",
            str(CONFIGS / "overlays/fusion_concat.yaml"),
            *common,
            *tiny_trainer_args(single_dir),
            "--data.init_args.modalities=[audio]",
        ]
    )
    single = next((run_folder(single_dir) / "checkpoints").glob("best-*.ckpt"))
    main(
        [
            "fit",
            "--config",
            quickstart,
            *common,
            *tiny_trainer_args(fused_dir),
            f"--model.init_args.pretrained_encoders={{audio: {single}}}",
            "--model.init_args.freeze_pretrained_encoders=true",
        ]
    )
    single_state = torch.load(single, weights_only=False)["state_dict"]
    fused_state = torch.load(run_folder(fused_dir) / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    audio_keys = [k for k in single_state if k.startswith(("model.encoders.audio.", "model.feature_norms.audio."))]
    assert audio_keys
    for key in audio_keys:  # frozen through a whole epoch of training
        assert torch.equal(fused_state[key], single_state[key]), key


def test_pretrained_encoders_can_learn_at_a_smaller_rate(tmp_path: Path) -> None:
    _, path = _single_run_checkpoint(tmp_path)
    optimizer_factory = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.0)
    task = _task(
        seed=2, pretrained_encoders={"face": str(path)}, pretrained_encoder_lr_scale=0.1, optimizer=optimizer_factory
    )
    optimizer = task.configure_optimizers()
    rest, pretrained = optimizer.param_groups
    face = {id(p) for p in [*task.model.encoders["face"].parameters(), *task.model.feature_norms["face"].parameters()]}
    assert {id(p) for p in pretrained["params"]} == face
    assert not face & {id(p) for p in rest["params"]}
    assert rest["lr"] == pytest.approx(1e-3) and pretrained["lr"] == pytest.approx(1e-4)
    assert "pretrained_encoders" not in pretrained
    # Every trainable parameter is optimised exactly once.
    assert len(rest["params"]) + len(pretrained["params"]) == len(list(task.parameters()))
    # Scale 1 (the default) keeps a single group, as before the option existed.
    plain = _task(seed=2, pretrained_encoders={"face": str(path)}, optimizer=optimizer_factory)
    assert len(plain.configure_optimizers().param_groups) == 1
    with pytest.raises(ValueError, match="freeze_pretrained_encoders"):
        _task(seed=2, pretrained_encoders={"face": str(path)}, pretrained_encoder_lr_scale=0.0)


def test_a_still_face_run_starts_a_clip_encoders_frame_encoder(tmp_path: Path) -> None:
    source, path = _single_run_checkpoint(tmp_path)  # its face encoder is FaceCNN(out_dim=8, widths=(4, 8))

    def clip_task(widths: tuple[int, ...]) -> MultitaskFERTask:
        torch.manual_seed(3)
        clip = FaceClipEncoder(FaceCNN(out_dim=8, widths=widths), out_dim=8, temporal="tcn", d_model=8)
        return MultitaskFERTask({"face": clip, "physio": PhysioCNN(out_dim=8, widths=(4,))}, LABEL_SPACE, fusion=FUSION)

    target = clip_task((4, 8))
    clip = target.model.encoders["face"]
    projection = clip.input_proj.weight.detach().clone()
    norm = {k: v.clone() for k, v in target.model.feature_norms["face"].state_dict().items()}
    assert load_pretrained_encoder(target.model, "face", path) is False  # the still run's feature norm is not used
    _assert_same(clip.frame_encoder, source.model.encoders["face"])
    assert torch.equal(clip.input_proj.weight, projection)
    for key, value in target.model.feature_norms["face"].state_dict().items():
        assert torch.equal(value, norm[key])
    with pytest.raises(DataError, match="per-frame encoder.*wrong shape"):
        load_pretrained_encoder(clip_task((4, 16)).model, "face", path)


class _EncoderWatcher(Callback):
    """Records, per epoch, whether the face encoder trained in train mode and a copy of its weights at the end."""

    def __init__(self) -> None:
        self.in_train_mode: list[bool] = []
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: MultitaskFERTask, batch: object, idx: int) -> None:
        if idx == 0:
            self.in_train_mode.append(pl_module.model.encoders["face"].training)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: MultitaskFERTask) -> None:
        encoder = pl_module.model.encoders["face"]
        self.states.append({k: v.detach().clone() for k, v in encoder.state_dict().items()})


def test_a_warm_up_holds_the_started_encoders_then_fine_tunes_them(tmp_path: Path) -> None:
    source, path = _single_run_checkpoint(tmp_path)
    task = _task(seed=2, pretrained_encoders={"face": str(path)}, pretrained_encoder_warmup_epochs=1)
    watcher = _EncoderWatcher()
    trainer = Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[watcher],
        accelerator="cpu",
    )
    loader = DataLoader([_batch(), _batch()], batch_size=None)
    fusion_before = task.model.fusion.fusion_token.detach().clone()
    trainer.fit(task, train_dataloaders=loader)
    assert watcher.in_train_mode == [False, True]  # eval mode (BatchNorm statistics kept) while held
    for key, value in source.model.encoders["face"].state_dict().items():
        assert torch.equal(watcher.states[0][key], value), key  # epoch 0: weights and statistics untouched
    assert not torch.equal(task.model.fusion.fusion_token, fusion_before)
    changed = [k for k, v in watcher.states[1].items() if not torch.equal(v, watcher.states[0][k])]
    assert any(k.endswith(".weight") for k in changed)  # epoch 1: fine-tuned, parameters ...
    assert any(k.endswith("running_mean") for k in changed)  # ... and BatchNorm statistics
    # Optimiser state exists only for parameters that were updated: the face encoder's began in epoch 1.
    optimizer = trainer.optimizers[0]
    assert all(p in optimizer.state for p in task.model.encoders["face"].parameters())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pretrained_encoder_warmup_epochs": 2}, "pretrained_encoders is empty"),
        ({"pretrained_encoder_warmup_epochs": -1, "pretrained_encoders": {"face": "x.ckpt"}}, ">= 0"),
        (
            {
                "pretrained_encoder_warmup_epochs": 1,
                "pretrained_encoders": {"face": "x.ckpt"},
                "freeze_pretrained_encoders": True,
            },
            "Keep one",
        ),
    ],
)
def test_a_warm_up_without_encoders_to_hold_is_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _task(seed=0, **options)


def test_a_list_freezes_only_the_named_started_encoders(tmp_path: Path) -> None:
    source, path = _single_run_checkpoint(tmp_path)
    started = {"face": str(path), "physio": str(path)}
    task = _task(seed=2, pretrained_encoders=started, freeze_pretrained_encoders=["physio"])
    task.load_pretrained_encoders()
    physio, physio_norm = task.model.encoders["physio"], task.model.feature_norms["physio"]
    face = task.model.encoders["face"]
    optimizer = task.configure_optimizers()
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in [*physio.parameters(), *physio_norm.parameters()]}
    assert {id(p) for p in face.parameters()} <= optimised
    task.train()
    assert not physio.training and not physio_norm.training and face.training
    for _ in range(2):
        optimizer.zero_grad()
        task.training_step(_batch(), 0).backward()
        optimizer.step()
    _assert_same(physio, source.model.encoders["physio"])
    _assert_same(physio_norm, source.model.feature_norms["physio"])
    original = source.model.encoders["face"].state_dict()
    assert any(not torch.equal(v, original[k]) for k, v in face.state_dict().items() if k.endswith(".weight"))


def test_a_warm_up_with_a_partial_freeze_holds_only_the_encoders_left_to_fine_tune(tmp_path: Path) -> None:
    _, path = _single_run_checkpoint(tmp_path)
    started = {"face": str(path), "physio": str(path)}
    task = _task(
        seed=2, pretrained_encoders=started, freeze_pretrained_encoders=["physio"], pretrained_encoder_warmup_epochs=1
    )
    task.load_pretrained_encoders()
    held = {id(m) for m in task.encoder_policy.held_modules}
    assert id(task.model.encoders["face"]) in held and id(task.model.feature_norms["face"]) in held
    assert id(task.model.encoders["physio"]) not in held


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pretrained_encoders": {"face": "x.ckpt"}, "freeze_pretrained_encoders": ["physio"]}, "does not start"),
        (
            {
                "pretrained_encoders": {"face": "x.ckpt"},
                "freeze_pretrained_encoders": ["face"],
                "pretrained_encoder_warmup_epochs": 1,
            },
            "every started encoder is frozen",
        ),
    ],
)
def test_a_freeze_list_naming_unstarted_encoders_or_leaving_nothing_to_warm_up_is_refused(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _task(seed=0, **options)


def test_the_policy_keeps_the_state_and_the_task_delegates(tmp_path: Path) -> None:
    _, path = _single_run_checkpoint(tmp_path)
    task = _task(
        seed=2,
        pretrained_encoders={"face": str(path)},
        pretrained_encoder_warmup_epochs=2,
        pretrained_encoder_lr_scale=0.5,
    )
    policy = task.encoder_policy
    assert isinstance(policy, PretrainedEncoderPolicy) and not isinstance(policy, torch.nn.Module)
    assert set(task.state_dict()) == set(_task(seed=2).state_dict())  # nothing of the policy in checkpoints
    task.load_pretrained_encoders()
    face, norm = task.model.encoders["face"], task.model.feature_norms["face"]
    assert policy.held_modules == [face, norm] and policy.frozen_modules == []
    policy.start_epoch(1)
    task.train()
    assert policy.warming_up and not face.training and not norm.training and task.model.fusion.training
    for p in face.parameters():
        p.grad = torch.ones_like(p)
    task.on_before_optimizer_step(torch.optim.SGD(face.parameters(), lr=1.0))
    assert all(p.grad is None for p in face.parameters())
    policy.start_epoch(2)
    assert not policy.warming_up and face.training
    others, started = policy.split_parameters(task.model, list(task.parameters()))
    assert {id(p) for p in started} == {id(p) for p in [*face.parameters(), *norm.parameters()]}
    assert len(others) + len(started) == len(list(task.parameters()))
