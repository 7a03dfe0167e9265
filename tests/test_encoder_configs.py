"""Encoders keyed by modality: the config shape, how several config files compose, and the errors."""

from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml

from multimodal_fer.cli import build_cli, main
from multimodal_fer.models.encoders import (
    AudioMelCNN,
    AudioSpectrogramTransformer,
    DepthCNN,
    FaceBackbone,
    FaceCNN,
    ModalityEncoders,
    PhysioCNN,
    PointNetEncoder,
)
from multimodal_fer.models.fusion import AttentionFusion
from multimodal_fer.tasks import MultitaskFERTask
from multimodal_fer.types import MODALITIES, LabelSpace

from conftest import CONFIGS, tiny_data_args

QUICKSTART = str(CONFIGS / "quickstart.yaml")
LABEL_SPACE = LabelSpace(expressions=("a", "b"), dimensions=("valence", "arousal"))

#: Small encoders for the composition tests (the quickstart's full-size ones are slow to build on a CPU).
SMALL = [
    "--model.init_args.encoders.face.init_args.widths=[4, 8]",
    "--model.init_args.encoders.audio.init_args.widths=[4]",
    "--model.init_args.encoders.depth.init_args.widths=[4]",
    "--model.init_args.encoders.physio.init_args.widths=[4]",
]


def _cli(tmp_path: Path, *configs: str, extra: tuple[str, ...] = ()):
    """Parse and build (no fit) the quickstart followed by ``configs``, with small encoders and no logger."""
    args = ["--config", QUICKSTART, *SMALL]  # arguments apply in order: the configs after it override them
    for config in configs:
        args += ["--config", config]
    args += [*tiny_data_args(tmp_path / "unused_cache"), "--trainer.logger=false", *extra]
    return build_cli(args, run=False)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------------------------------- the container
def test_fields_are_the_modalities_in_canonical_order() -> None:
    assert tuple(f.name for f in fields(ModalityEncoders)) == MODALITIES


def test_an_encoder_under_another_modality_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"encoders\.audio is a FaceCNN, which reads 'face' inputs.*encoders\.face"):
        ModalityEncoders(audio=FaceCNN(out_dim=8, widths=(4,)))


def test_mappings_and_sequences_become_keyed_encoders_in_canonical_order() -> None:
    face, physio = FaceCNN(out_dim=8, widths=(4,)), PhysioCNN(out_dim=8, widths=(4,))
    assert list(ModalityEncoders.of({"physio": physio, "face": face}).as_dict()) == ["face", "physio"]
    assert ModalityEncoders.of([physio, face]).as_dict() == {"face": face, "physio": physio}
    keyed = ModalityEncoders(face=face)
    assert ModalityEncoders.of(keyed) is keyed
    with pytest.raises(ValueError, match=r"keys \['thermal'\], which are no modality"):
        ModalityEncoders.of({"thermal": face})
    with pytest.raises(ValueError, match="Two encoders read the modality 'face'"):
        ModalityEncoders.of([face, FaceCNN(out_dim=8, widths=(4,))])


def test_the_task_names_the_data_modality_without_an_encoder_and_where_to_add_it() -> None:
    encoders = ModalityEncoders(face=FaceCNN(out_dim=8, widths=(4,)))
    with pytest.raises(ValueError, match=r"loads modalities \['face', 'audio'\].*for \['audio'\].*encoders\.audio"):
        MultitaskFERTask(encoders, LABEL_SPACE, ["face", "audio"], fusion=AttentionFusion)


def test_encoders_of_modalities_the_data_does_not_load_are_left_out() -> None:
    encoders = {"face": FaceCNN(out_dim=8, widths=(4,)), "physio": PhysioCNN(out_dim=8, widths=(4,))}
    task = MultitaskFERTask(encoders, LABEL_SPACE, ["physio"], fusion=AttentionFusion)
    assert list(task.model.encoders) == ["physio"]


# ----------------------------------------------------------------------------------- composing config files
def test_a_later_config_changes_one_modality_and_keeps_the_others(tmp_path: Path) -> None:
    overlay = _write(
        tmp_path,
        "audio.yaml",
        "model:\n  init_args:\n    encoders:\n      audio:\n"
        "        class_path: multimodal_fer.models.encoders.AudioSpectrogramTransformer\n"
        "        init_args: {out_dim: 32, d_model: 16, num_heads: 2, num_layers: 1}\n",
    )
    encoders = _cli(tmp_path, overlay).model.model.encoders
    assert list(encoders) == list(MODALITIES)
    assert isinstance(encoders["audio"], AudioSpectrogramTransformer) and encoders["audio"].out_dim == 32
    # The quickstart's other encoders, with the quickstart's (and the flags') settings.
    assert isinstance(encoders["face"], FaceCNN) and encoders["face"].out_dim == 128
    assert encoders["face"].fc.in_features == 8  # widths [4, 8] from the command line
    assert isinstance(encoders["depth"], DepthCNN) and isinstance(encoders["physio"], PhysioCNN)


def test_two_overlays_of_different_modalities_both_apply(tmp_path: Path) -> None:
    face = _write(
        tmp_path, "face.yaml", "model:\n  init_args:\n    encoders:\n      face:\n        init_args: {out_dim: 24}\n"
    )
    depth = _write(
        tmp_path,
        "depth.yaml",
        "model:\n  init_args:\n    encoders:\n      depth:\n"
        "        class_path: multimodal_fer.models.encoders.PointNetEncoder\n"
        "        init_args: {out_dim: 16, in_channels: 6}\n",
    )
    cli = _cli(tmp_path, face, depth, extra=("--data.init_args.depth_input=points",))
    encoders = cli.model.model.encoders
    assert isinstance(encoders["face"], FaceCNN) and encoders["face"].out_dim == 24  # class kept, one value changed
    assert isinstance(encoders["depth"], PointNetEncoder) and encoders["depth"].out_dim == 16
    assert isinstance(encoders["audio"], AudioMelCNN) and encoders["audio"].out_dim == 128
    dumped = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))["model"]["init_args"]["encoders"]
    assert dumped["face"]["init_args"]["widths"] == [4, 8] and dumped["face"]["init_args"]["out_dim"] == 24


def test_a_flag_changes_one_encoder_setting(tmp_path: Path) -> None:
    cli = _cli(tmp_path, extra=("--model.init_args.encoders.physio.init_args.out_dim=40",))
    assert cli.model.model.encoders["physio"].out_dim == 40 and cli.model.model.encoders["audio"].out_dim == 128


def test_the_shipped_presets_set_one_modality_each(tmp_path: Path) -> None:
    cli = _cli(tmp_path, str(CONFIGS / "encoders/face_resnet18.yaml"), str(CONFIGS / "encoders/physio_cnn_small.yaml"))
    encoders = cli.model.model.encoders
    assert isinstance(encoders["face"], FaceBackbone) and isinstance(encoders["audio"], AudioMelCNN)
    assert isinstance(encoders["depth"], DepthCNN) and isinstance(encoders["physio"], PhysioCNN)


def test_null_removes_an_encoder_and_the_data_must_then_do_without_it(tmp_path: Path) -> None:
    overlay = _write(tmp_path, "no_depth.yaml", "model:\n  init_args:\n    encoders:\n      depth: null\n")
    cli = _cli(tmp_path, overlay, extra=("--data.init_args.modalities=[face,audio,physio]",))
    assert list(cli.model.model.encoders) == ["face", "audio", "physio"]
    with pytest.raises(ValueError, match=r"no encoder is configured for \['depth'\].*encoders\.depth"):
        _cli(tmp_path, overlay)


def test_an_unknown_modality_key_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overlay = _write(
        tmp_path,
        "thermal.yaml",
        "model:\n  init_args:\n    encoders:\n      thermal:\n"
        "        class_path: multimodal_fer.models.encoders.FaceCNN\n",
    )
    with pytest.raises(SystemExit):
        main(["fit", "--config", QUICKSTART, "--config", overlay, "--trainer.logger=false"])
    assert "thermal" in capsys.readouterr().err


def test_an_encoder_under_the_wrong_key_in_a_config_names_both(tmp_path: Path) -> None:
    overlay = _write(
        tmp_path,
        "swapped.yaml",
        "model:\n  init_args:\n    encoders:\n      audio:\n"
        "        class_path: multimodal_fer.models.encoders.FaceCNN\n        init_args: {widths: [4]}\n",
    )
    with pytest.raises(ValueError, match=r"encoders\.audio is a FaceCNN, which reads 'face'"):
        _cli(tmp_path, overlay)


def test_a_config_saved_with_the_older_encoder_list_still_builds(tmp_path: Path) -> None:
    """Run folders written before encoders were keyed hold a list; each encoder goes to the modality it reads."""
    settings = yaml.safe_load(Path(QUICKSTART).read_text())
    settings["model"]["init_args"]["encoders"] = [
        {"class_path": "multimodal_fer.models.encoders.PhysioCNN", "init_args": {"out_dim": 8, "widths": [4]}},
        {"class_path": "multimodal_fer.models.encoders.FaceCNN", "init_args": {"out_dim": 8, "widths": [4]}},
    ]
    old = _write(tmp_path, "old_run_config.yaml", yaml.safe_dump(settings))
    args = ["--config", old, *tiny_data_args(tmp_path / "c"), "--trainer.logger=false"]
    cli = build_cli([*args, "--data.init_args.modalities=[face,physio]"], run=False)
    assert list(cli.model.model.encoders) == ["face", "physio"]


# ------------------------------------------------------------------------------------------------- order
#: Modalities in the order their test encoders were constructed.
CONSTRUCTED: list[str] = []


class RecordingFace(FaceCNN):
    """A small face CNN that records its construction."""

    def __init__(self, out_dim: int = 8) -> None:
        CONSTRUCTED.append("face")
        super().__init__(out_dim=out_dim, widths=(4,))


class RecordingAudio(AudioMelCNN):
    """A small audio CNN that records its construction."""

    def __init__(self, out_dim: int = 8) -> None:
        CONSTRUCTED.append("audio")
        super().__init__(out_dim=out_dim, widths=(4,))


class RecordingDepth(DepthCNN):
    """A small depth CNN that records its construction."""

    def __init__(self, out_dim: int = 8) -> None:
        CONSTRUCTED.append("depth")
        super().__init__(out_dim=out_dim, widths=(4,))


class RecordingPhysio(PhysioCNN):
    """A small physiology CNN that records its construction."""

    def __init__(self, out_dim: int = 8) -> None:
        CONSTRUCTED.append("physio")
        super().__init__(out_dim=out_dim, widths=(4,))


def test_encoders_are_built_face_audio_depth_physio_whatever_the_key_order(tmp_path: Path) -> None:
    """The order of construction fixes which random numbers initialise which encoder: it must not follow the file."""
    module = __name__
    overlay = _write(
        tmp_path,
        "reversed.yaml",
        "model:\n  init_args:\n    encoders:\n"
        f"      physio: {{class_path: {module}.RecordingPhysio}}\n"
        f"      depth: {{class_path: {module}.RecordingDepth}}\n"
        f"      audio: {{class_path: {module}.RecordingAudio}}\n"
        f"      face: {{class_path: {module}.RecordingFace}}\n",
    )
    CONSTRUCTED.clear()
    args = ["--config", QUICKSTART, "--config", overlay, *tiny_data_args(tmp_path / "c"), "--trainer.logger=false"]
    cli = build_cli(args, run=False)
    assert CONSTRUCTED == ["face", "audio", "depth", "physio"]
    # Same seed, same encoders in the same order by hand: the same initial weights. (out_dim 128 comes along from
    # the quickstart's encoders: init_args the new class also has are kept when the class changes.)
    torch.manual_seed(0)
    by_hand = [RecordingFace(128), RecordingAudio(128), RecordingDepth(128), RecordingPhysio(128)]
    torch.manual_seed(0)
    again = build_cli(args + ["--seed_everything=0"], run=False).model.model.encoders
    for encoder, (name, built) in zip(by_hand, again.items(), strict=True):
        for (key, value), (_, other) in zip(encoder.state_dict().items(), built.state_dict().items(), strict=True):
            assert torch.equal(value, other), f"{name}.{key}"
    assert list(cli.model.model.encoders) == list(MODALITIES)
