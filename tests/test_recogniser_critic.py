"""Recogniser-guided restoration: a trained face recogniser, frozen, as the restoration GAN's critic."""

from pathlib import Path

import pytest
import torch
from sklearn.metrics import f1_score

from multimodal_fer.cli import main
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders import AudioMelCNN, FaceCNN
from multimodal_fer.models.fusion import ConcatFusion
from multimodal_fer.models.multimodal import MultimodalFERModel
from multimodal_fer.models.restoration import GatedUNetGenerator, load_restorer
from multimodal_fer.models.restoration.recogniser_critic import RecogniserCritic
from multimodal_fer.tasks.recogniser_loading import load_fer_model
from multimodal_fer.types import LabelSpace

from conftest import CONFIGS, run_folder, tiny_data_args, tiny_trainer_args
from restoration_fakes import restoration_loader, tiny_task, tiny_trainer

QUICKSTART = str(CONFIGS / "quickstart.yaml")
FACE_ONLY = str(CONFIGS / "overlays" / "fusion_concat.yaml")
RESTORATION = str(CONFIGS / "restoration" / "synthaffect.yaml")
READS_WITH_RECOGNISER = str(CONFIGS / "restoration" / "overlays" / "reads_expression_recogniser.yaml")
LABELS = LabelSpace(expressions=("neutral", "happy", "sad"), action_units=(1, 2, 4), dimensions=("valence",))


def _face_model() -> MultimodalFERModel:
    fusion = lambda in_dims: ConcatFusion(in_dims, hidden_dim=16, out_dim=8)  # noqa: E731
    return MultimodalFERModel({"face": FaceCNN(out_dim=8, widths=(4, 8))}, fusion, LABELS, head_hidden_dim=8)


def test_critic_is_frozen_stays_in_eval_and_passes_gradients_to_the_face() -> None:
    critic = RecogniserCritic(_face_model(), image_size=32)
    assert not any(p.requires_grad for p in critic.parameters())
    critic.train()
    assert not any(m.training for m in critic.model.modules()), "train() must not wake BN or dropout"
    before = [b.clone() for b in critic.model.buffers()]
    face = torch.randn(3, 3, 32, 32, requires_grad=True)
    features, outputs = critic(face)
    assert set(outputs) == {"expr", "au"}, "only the expression and AU heads judge restored faces"
    assert outputs["expr"].shape == (3, 3) and outputs["au"].shape == (3, 3)
    # Two residual stages, then the face vector after the model's feature norm.
    assert [tuple(f.shape) for f in features] == [(3, 4, 16, 16), (3, 8, 8, 8), (3, 8)]
    (outputs["expr"].sum() + sum(f.sum() for f in features)).backward()
    assert face.grad is not None and face.grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, critic.model.buffers(), strict=True))
    # Each call captures its own features: hooks do not pile up.
    assert len(critic(face)[0]) == 3


def test_critic_restandardises_faces_like_the_face_encoder_behind_a_restorer() -> None:
    critic = RecogniserCritic(_face_model())
    face = torch.randn(2, 3, 32, 32)
    _, plain = critic(face)
    _, shifted = critic(face * 3.0 + 5.0)  # the same face standardised with another image's statistics
    torch.testing.assert_close(plain["expr"], shifted["expr"], atol=1e-4, rtol=1e-4)


def test_critic_refuses_a_model_without_a_face_encoder() -> None:
    fusion = lambda in_dims: ConcatFusion(in_dims, hidden_dim=16, out_dim=8)  # noqa: E731
    audio_only = MultimodalFERModel({"audio": AudioMelCNN(out_dim=8, widths=(4,))}, fusion, LABELS, head_hidden_dim=8)
    with pytest.raises(ValueError, match="needs a model with a face encoder"):
        RecogniserCritic(audio_only)


@pytest.fixture(scope="module")
def face_recogniser(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Path:
    """Best checkpoint of a one-epoch face-only recogniser trained on clean faces."""
    folder = tmp_path_factory.mktemp("recogniser")
    main(
        [
            "fit",
            *("--config", QUICKSTART, "--config", FACE_ONLY),
            *tiny_data_args(tiny_cache, modalities="[face]", clean_faces="true"),
            *tiny_trainer_args(folder),
            "--trainer.max_epochs=1",
        ]
    )
    return next((run_folder(folder) / "checkpoints").glob("best-*.ckpt"))


def test_load_fer_model_rebuilds_the_run_with_its_weights(face_recogniser: Path) -> None:
    model, image_size = load_fer_model(face_recogniser)
    assert image_size == 32 and list(model.encoders) == ["face"] and not model.training
    saved = torch.load(face_recogniser, map_location="cpu", weights_only=False)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[f"model.{key}"]), key


def test_load_fer_model_refuses_wrong_files(face_recogniser: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fer_model(tmp_path / "missing.ckpt")
    lone = tmp_path / "lone" / "best.ckpt"
    lone.parent.mkdir()
    lone.write_bytes(face_recogniser.read_bytes())
    with pytest.raises(FileNotFoundError, match="pass the run's config explicitly"):
        load_fer_model(lone)
    restoration_config = tmp_path / "restoration.yaml"
    restoration_config.write_text((CONFIGS / "restoration" / "synthaffect.yaml").read_text())
    with pytest.raises(DataError, match="not a MultitaskFERTask"):
        load_fer_model(face_recogniser, restoration_config)


def test_restoration_fit_guided_by_a_frozen_recogniser(
    face_recogniser: Path, tiny_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", RESTORATION, *tiny_trainer_args(tmp_path)]
    guided = f"--model.init_args.recogniser_critic={face_recogniser}"
    main([*args, *tiny_data_args(tiny_cache), guided, "--trainer.max_epochs=1"])
    restorer = run_folder(tmp_path) / "checkpoints/restorer.ckpt"
    checkpoint = torch.load(restorer, weights_only=False)
    recogniser = torch.load(face_recogniser, weights_only=False)["state_dict"]
    state = checkpoint["state_dict"]
    critic = {k.removeprefix("critic.model."): v for k, v in state.items() if k.startswith("critic.")}
    assert critic, "the frozen recogniser is the critic"
    for key, value in critic.items():
        assert torch.equal(value, recogniser[f"model.{key}"]), f"the critic changed during training: {key}"
    assert int(load_restorer(restorer).image_size) == 32

    other = ["fit", "--config", RESTORATION, *tiny_trainer_args(tmp_path / "other")]
    with pytest.raises(ValueError, match="trained on 32-pixel faces but the data has 48-pixel"):
        main([*other, *tiny_data_args(tmp_path / "cache48", image_size=48), guided, "--trainer.fast_dev_run=true"])


def test_the_generators_reader_starts_from_the_recognisers_face_cnn(
    face_recogniser: Path, tiny_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    """From a run folder or from the critic, in the live generator and its moving average; a fit applies it."""
    recogniser = load_fer_model(face_recogniser)[0].encoders["face"].state_dict()

    def assert_started(generator: torch.nn.Module) -> None:
        reader = generator.expression_recogniser.state_dict()
        for key, value in recogniser.items():
            if key == "features.0.weight":  # the mask channel added, at zero
                assert torch.equal(reader[key][:, :3], value) and not reader[key][:, 3].any()
            elif (key.startswith("features.") and key.endswith(("weight", "bias"))) or key.startswith("fc."):
                assert torch.equal(reader[key], value), key

    reading = {"expression_classes": 8, "expression_reader": "recogniser"}
    for source in (str(face_recogniser.parent.parent), "critic"):
        task = tiny_task(
            generator=GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,), extra_convs=0, stem_kernel=3, **reading),
            recogniser_critic=str(face_recogniser),
            expression_reader_init=source,
            ema_decay=0.9,
        )
        task._start_reader(source)
        assert_started(task.restorer.generator)
        assert_started(task.generator_ema)

    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *("--config", RESTORATION, "--config", READS_WITH_RECOGNISER),
            *tiny_trainer_args(tmp_path),
            *tiny_data_args(tiny_cache),
            f"--model.init_args.recogniser_critic={face_recogniser}",
            "--model.init_args.generator_lr=0.0",  # the reader keeps what it started from
            "--trainer.max_epochs=1",
        ]
    )
    checkpoint = torch.load(run_folder(tmp_path) / "checkpoints/last.ckpt", weights_only=False)
    restorer = load_restorer(run_folder(tmp_path) / "checkpoints/last.ckpt")
    assert restorer.generator.config["expression_reader"] == "recogniser"
    assert_started(restorer.generator)
    assert any(k.startswith("restorer.generator.expression_recogniser.") for k in checkpoint["state_dict"])


@pytest.mark.parametrize("score", ["recognition", "auto"])
def test_checkpoints_can_be_chosen_by_recognition_of_restored_faces(
    face_recogniser: Path, tmp_path: Path, score: str
) -> None:
    task = tiny_task(recogniser_critic=str(face_recogniser), score=score)
    assert task.score_name == "recognition"
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    loader = restoration_loader(count=8, size=32, batch_size=4)
    trainer.fit(task, loader, loader)
    metrics = trainer.callback_metrics
    assert metrics["val/score"].item() == metrics["val/recognition/f1_macro"].item()
    assert "val/restoration/psnr_occluded" in metrics, "restoration quality is still logged"
    # The recogniser's macro-F1 on the blindly restored validation faces, by hand.
    task.eval()
    predicted, labels = [], []
    with torch.no_grad():
        for batch in loader:
            restored = task(batch["face"])["restored"]
            predicted += task.critic(restored)[1]["expr"].argmax(-1).tolist()
            labels += batch["expr"].tolist()
    present = sorted(set(predicted) | set(labels))
    expected = f1_score(labels, predicted, labels=present, average="macro", zero_division=0)
    assert metrics["val/recognition/f1_macro"].item() == pytest.approx(expected, abs=1e-6)

    psnr = tiny_task(recogniser_critic=str(face_recogniser))  # the default keeps PSNR, and still logs recognition
    assert psnr.score_name == "psnr" and "val" in psnr.recognition


# ------------------------------------------------------------------------ several recognisers judging together
def test_an_ensemble_judges_with_each_member_and_answers_with_the_first() -> None:
    torch.manual_seed(0)
    first, second = _face_model(), _face_model()
    ensemble = RecogniserCritic(first, image_size=32, others=[second])
    alone = [RecogniserCritic(first), RecogniserCritic(second)]
    assert ensemble.num_members == 2 and alone[0].num_members == 1
    assert not any(p.requires_grad for p in ensemble.parameters())
    ensemble.train()
    assert not any(m.training for m in ensemble.modules() if m is not ensemble)
    face = torch.randn(3, 3, 32, 32)
    each = ensemble.forward_each(face)
    for (maps, outputs), member in zip(each, alone, strict=True):
        member_maps, member_outputs = member(face)
        assert len(maps) == len(member_maps) == 3, "each member's stages, captured once"
        for got, expected in zip(maps, member_maps, strict=True):
            torch.testing.assert_close(got, expected)
        torch.testing.assert_close(outputs["expr"], member_outputs["expr"])
    assert not torch.allclose(each[0][1]["expr"], each[1][1]["expr"]), "two different recognisers"
    torch.testing.assert_close(ensemble(face)[1]["expr"], each[0][1]["expr"])
    # One recogniser alone keeps the state dict it always had (old restoration checkpoints still resume).
    assert all(key.startswith("model.") for key in alone[0].state_dict())
    other_labels = LabelSpace(expressions=("neutral", "happy"), action_units=(1, 2, 4), dimensions=("valence",))
    fusion = lambda in_dims: ConcatFusion(in_dims, hidden_dim=16, out_dim=8)  # noqa: E731
    foreign = MultimodalFERModel({"face": FaceCNN(out_dim=8, widths=(4, 8))}, fusion, other_labels, head_hidden_dim=8)
    with pytest.raises(ValueError, match="must predict the same labels"):
        RecogniserCritic(first, others=[foreign])


def test_restorer_losses_under_an_ensemble_are_the_mean_of_each_members(face_recogniser: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin" / "checkpoints" / "best.ckpt"
    twin.parent.mkdir(parents=True)
    state = torch.load(face_recogniser, map_location="cpu", weights_only=False)
    torch.manual_seed(1)
    state["state_dict"] = {
        k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() and v.dim() > 1 else v
        for k, v in state["state_dict"].items()
    }
    torch.save(state, twin)
    (twin.parent.parent / "config.yaml").write_text((face_recogniser.parent.parent / "config.yaml").read_text())
    options = {"label_weight": 1.0}
    ensemble = tiny_task(recogniser_critic=[str(face_recogniser), str(twin)], **options)
    singles = [tiny_task(recogniser_critic=str(path), **options) for path in (face_recogniser, twin)]
    assert ensemble.critic.num_members == 2
    loader = restoration_loader(count=4, size=32, batch_size=4)
    batch = next(iter(loader))
    ensemble.eval()
    with torch.no_grad():
        out = ensemble.restorer(batch["face"], batch["occlusion_mask"])
        losses, outputs = ensemble._restorer_losses(batch, out)
        each = [single.eval()._restorer_losses(batch, out) for single in singles]
    for name in ("feature", "consistency", "label"):
        expected = (each[0][0][name] + each[1][0][name]) / 2
        assert losses[name].item() == pytest.approx(expected.item(), rel=1e-5), name
    assert each[0][0]["consistency"].item() != pytest.approx(each[1][0]["consistency"].item())
    mean_probability = (each[0][1]["expr"].softmax(-1) + each[1][1]["expr"].softmax(-1)) / 2
    torch.testing.assert_close(outputs["expr"].exp(), mean_probability)
    with pytest.raises(ValueError, match="leave it out"):
        tiny_task(recogniser_critic=[str(face_recogniser), str(twin)], recogniser_critic_config="run.yaml")
