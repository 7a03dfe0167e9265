"""The generator that reads the expression before it draws (``expression_classes``) and its training term."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multimodal_fer.datasets.synthaffect.labels import SYNTHAFFECT_LABEL_SPACE
from multimodal_fer.errors import DataError
from multimodal_fer.models.encoders import FaceCNN
from multimodal_fer.models.restoration import (
    RESTORER_CHECKPOINT_KEY,
    FaceRestorer,
    GatedUNetGenerator,
    OcclusionMaskNet,
    load_restorer,
)
from multimodal_fer.models.restoration.training_pass import restore_for_training

from restoration_fakes import restoration_loader, tiny_task, tiny_trainer

EXPRESSIONS = SYNTHAFFECT_LABEL_SPACE.num_expressions
#: The recogniser reader's stage widths and output size in these tests (a FaceCNN of the same shape fits it).
READER_WIDTHS, READER_FEATURES = (4, 8), 6


def _generator(expression_classes: int = 0, seed: int = 0, reader: str = "encoder") -> GatedUNetGenerator:
    torch.manual_seed(seed)
    return GatedUNetGenerator(
        widths=(4, 8, 8),
        dilations=(2,),
        extra_convs=0,
        stem_kernel=3,
        expression_classes=expression_classes,
        expression_reader=reader,  # type: ignore[arg-type]
        reader_widths=READER_WIDTHS,
        reader_features=READER_FEATURES,
    )


def _upper_face_classes(count: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Faces (N, 3, 16, 16) whose class is a bright patch's column in the upper half; the lower half is masked."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    faces = 0.3 * torch.randn(count, 3, 16, 16, generator=generator)
    for index, label in enumerate(labels.tolist()):
        faces[index, :, 2:6, 4 * label : 4 * label + 4] += 2.0
    mask = torch.zeros(count, 1, 16, 16)
    mask[:, :, 8:, :] = 1.0
    return faces, mask, labels


@pytest.mark.parametrize("reader", ["encoder", "bottleneck", "recogniser"])
def test_the_reader_learns_the_expression_from_the_visible_upper_face(reader: str) -> None:
    """Trained on its cross-entropy alone, the reader separates classes that only the visible half shows."""
    classes = 4
    generator = _generator(classes, reader=reader)
    faces, mask, labels = _upper_face_classes(64, classes, seed=0)
    optimiser = torch.optim.Adam(generator.parameters(), lr=1e-2)
    for _ in range(60):
        logits = generator.forward_with_expression(faces, mask)[1]
        assert logits is not None
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    held_out, held_mask, held_labels = _upper_face_classes(64, classes, seed=1)
    with torch.no_grad():
        logits = generator.forward_with_expression(held_out, held_mask)[1]
    assert logits is not None
    assert (logits.argmax(1) == held_labels).float().mean() > 0.9


def test_the_encoder_reader_is_the_default_and_old_exports_keep_the_bottleneck_reader() -> None:
    reading = _generator(EXPRESSIONS)
    assert reading.expression_encoder is not None and reading.config["expression_reader"] == "encoder"
    old = FaceRestorer(OcclusionMaskNet(widths=(4, 8)), _generator(EXPRESSIONS, reader="bottleneck"))
    exported = old.export()
    del exported["architecture"]["generator"]["expression_reader"]  # written before the reader could be chosen
    loaded = FaceRestorer.from_export(exported)
    assert loaded.generator.expression_encoder is None and loaded.generator.config["expression_reader"] == "bottleneck"
    faces, mask = torch.randn(2, 3, 16, 16), torch.zeros(2, 1, 16, 16)
    torch.testing.assert_close(loaded.generator(faces, mask), old.generator(faces, mask))
    with pytest.raises(ValueError, match="expression_reader must be one of"):
        _generator(EXPRESSIONS, reader="pooled")


def test_the_head_starts_as_the_identity_and_its_logits_come_with_the_image() -> None:
    plain, reading = _generator(), _generator(EXPRESSIONS)
    reading.load_state_dict(plain.state_dict(), strict=False)  # the shared layers, the head left as drawn
    faces, mask = torch.randn(3, 3, 16, 16), (torch.rand(3, 1, 16, 16) > 0.7).float()
    image, logits = reading.forward_with_expression(faces, mask)
    assert logits is not None and logits.shape == (3, EXPRESSIONS)
    torch.testing.assert_close(image, plain(faces, mask))  # zero modulation: the same fill until it learns
    torch.testing.assert_close(reading(faces, mask), image)
    assert plain.forward_with_expression(faces, mask)[1] is None and not plain.reads_expression
    assert "expression_classes" not in plain.config and reading.config["expression_classes"] == EXPRESSIONS


def test_what_the_head_reads_changes_the_fill_once_the_modulation_has_learnt() -> None:
    generator = _generator(EXPRESSIONS)
    assert generator.expression_modulation is not None and generator.expression_head is not None
    torch.nn.init.normal_(generator.expression_modulation.weight, std=1.0)
    faces, mask = torch.randn(2, 3, 16, 16), torch.zeros(2, 1, 16, 16)
    mask[:, :, 8:, :] = 1.0  # the lower half hidden
    before = generator(faces, mask)
    with torch.no_grad():
        generator.expression_head.bias[0] += 20.0  # the head now reads expression 0 on every face
    assert not torch.allclose(generator(faces, mask), before)


def test_bad_expression_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="expression_classes must be 0"):
        _generator(1)
    with pytest.raises(ValueError, match="expression_classes must be 0"):
        _generator(-2)


def test_a_reading_restorer_round_trips_through_export_and_returns_what_it_read(tmp_path: Path) -> None:
    torch.manual_seed(0)
    restorer = FaceRestorer(OcclusionMaskNet(widths=(4, 8)), _generator(EXPRESSIONS)).eval()
    assert restorer.generator.expression_modulation is not None
    torch.nn.init.normal_(restorer.generator.expression_modulation.weight)  # not the identity any more
    restorer.image_size.fill_(16)
    torch.save({RESTORER_CHECKPOINT_KEY: restorer.export()}, tmp_path / "r.ckpt")
    loaded = load_restorer(tmp_path / "r.ckpt")
    faces = torch.randn(2, 3, 16, 16)
    out, again = restorer(faces), loaded(faces)
    torch.testing.assert_close(again["restored"], out["restored"])
    torch.testing.assert_close(again["expression_logits"], out["expression_logits"])
    assert "expression_logits" not in FaceRestorer(OcclusionMaskNet(widths=(4, 8)), _generator()).eval()(faces)


def test_the_term_is_the_heads_cross_entropy_against_the_labels_and_trains_the_head() -> None:
    batch = next(iter(restoration_loader(4, 16, batch_size=4)))
    batch["expr"][0] = -1  # an unlabelled face takes no part
    task = tiny_task(generator=_generator(EXPRESSIONS), generator_expression_weight=3.0, predicted_mask_probability=0)
    plain = tiny_task(generator=_generator(EXPRESSIONS), predicted_mask_probability=0)
    plain.load_state_dict(task.state_dict())
    out = restore_for_training(task.restorer, batch["face"], batch["occlusion_mask"], 0.0)
    losses, _ = task._restorer_losses(batch, out)
    without, _ = plain._restorer_losses(batch, out)
    expected = torch.nn.functional.cross_entropy(out["expression_logits"][1:], batch["expr"][1:])
    assert losses["generator_expression"].item() == pytest.approx(expected.item()) and expected.item() > 0
    assert without["generator_expression"].item() == pytest.approx(expected.item())  # measured when weighing 0
    assert losses["total"].item() == pytest.approx(without["total"].item() + 3.0 * expected.item(), rel=1e-5)
    losses["total"].backward()
    head = task.restorer.generator.expression_head
    assert head is not None and head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_the_term_needs_a_head_for_the_datas_expressions() -> None:
    with pytest.raises(ValueError, match="expression_classes: 8"):
        tiny_task(generator_expression_weight=1.0)  # tiny_task's generator reads nothing
    with pytest.raises(ValueError, match="reads 5 expressions"):
        tiny_task(generator=_generator(5), generator_expression_weight=1.0)
    with pytest.raises(ValueError, match="reads 5 expressions"):  # measured even at weight 0: it must fit the labels
        tiny_task(generator=_generator(5))
    with pytest.raises(ValueError, match="generator_expression_weight must be at least 0"):
        tiny_task(generator=_generator(EXPRESSIONS), generator_expression_weight=-1.0)


def test_a_reading_generator_fits_resumes_and_exports(tmp_path: Path) -> None:
    task = tiny_task(generator=_generator(EXPRESSIONS), generator_expression_weight=1.0, ema_decay=0.9)
    trainer = tiny_trainer(tmp_path, max_epochs=2)
    trainer.fit(task, restoration_loader(8, 16), restoration_loader(4, 16, seed=1))
    logged = trainer.callback_metrics
    assert torch.isfinite(logged["train/loss/generator_expression"]) and logged["train/loss/generator_expression"] > 0
    assert logged["val/loss/generator_expression"] > 0  # judged by the moving average on held-out faces
    exported = task.restorer.export()
    assert exported["architecture"]["generator"]["expression_classes"] == EXPRESSIONS


def test_a_checkpoint_with_another_reader_is_refused_with_the_option_that_loads_it() -> None:
    old = tiny_task(generator=_generator(EXPRESSIONS, reader="bottleneck"))
    new = tiny_task(generator=_generator(EXPRESSIONS))
    with pytest.raises(DataError, match="expression_reader=bottleneck"):
        new.on_load_checkpoint({"state_dict": old.state_dict()})
    with pytest.raises(DataError, match="expression_reader=encoder"):
        old.on_load_checkpoint({"state_dict": new.state_dict()})
    new.on_load_checkpoint({"state_dict": tiny_task(generator=_generator(EXPRESSIONS)).state_dict()})  # the same
    recognising = tiny_task(generator=_generator(EXPRESSIONS, reader="recogniser"))
    with pytest.raises(DataError, match="expression_reader=recogniser"):
        new.on_load_checkpoint({"state_dict": recognising.state_dict()})
    with pytest.raises(DataError, match="expression_reader=encoder"):
        recognising.on_load_checkpoint({"state_dict": new.state_dict()})
    tiny_task().on_load_checkpoint({"state_dict": old.state_dict()})  # no reader built: loading decides the rest


# ------------------------------------------------------------------------ the recogniser reader
def _masked_input(faces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the generator hands its reader: the masked face beside the mask, (B, 4, H, W)."""
    return torch.cat([faces * (1.0 - mask), mask], dim=1)


def test_a_recogniser_reader_started_from_a_face_cnn_computes_its_features_on_the_masked_face() -> None:
    torch.manual_seed(3)
    encoder = FaceCNN(out_dim=READER_FEATURES, widths=READER_WIDTHS).eval()
    generator = _generator(EXPRESSIONS, reader="recogniser").eval()
    reader = generator.expression_recogniser
    assert reader is not None and generator.expression_encoder is None
    faces, mask = torch.randn(3, 3, 16, 16), (torch.rand(3, 1, 16, 16) > 0.6).float()
    with torch.no_grad():
        assert not torch.allclose(reader(_masked_input(faces, mask)), encoder(faces * (1.0 - mask)))
        reader.load_face_encoder(encoder)
        torch.testing.assert_close(reader(_masked_input(faces, mask)), encoder(faces * (1.0 - mask)))
        # The mask channel starts at zero: the reading depends on the mask only once training moves it.
        without_mask = torch.cat([faces * (1.0 - mask), torch.zeros_like(mask)], dim=1)
        torch.testing.assert_close(reader(_masked_input(faces, mask)), reader(without_mask))
    assert generator.config["reader_widths"] == list(READER_WIDTHS)
    assert generator.config["reader_features"] == READER_FEATURES
    assert "reader_widths" not in _generator(EXPRESSIONS).config  # the other readers' exports read as before


def test_a_face_cnn_of_another_shape_is_refused_with_the_options_to_set() -> None:
    reader = _generator(EXPRESSIONS, reader="recogniser").expression_recogniser
    assert reader is not None
    with pytest.raises(ValueError, match="reader_widths and reader_features"):
        reader.load_face_encoder(FaceCNN(out_dim=READER_FEATURES, widths=(4, 16)))
    with pytest.raises(ValueError, match="reader_widths and reader_features"):
        reader.load_face_encoder(FaceCNN(out_dim=9, widths=READER_WIDTHS))
    with pytest.raises(ValueError, match="no residual CNN"):
        reader.load_face_encoder(torch.nn.Linear(2, 2))


def test_a_recogniser_reading_restorer_round_trips_through_export(tmp_path: Path) -> None:
    torch.manual_seed(0)
    restorer = FaceRestorer(OcclusionMaskNet(widths=(4, 8)), _generator(EXPRESSIONS, reader="recogniser")).eval()
    restorer.image_size.fill_(16)
    torch.save({RESTORER_CHECKPOINT_KEY: restorer.export()}, tmp_path / "r.ckpt")
    loaded = load_restorer(tmp_path / "r.ckpt")
    assert loaded.generator.expression_recogniser is not None
    faces = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(faces)["expression_logits"], restorer(faces)["expression_logits"])


def test_expression_reader_init_needs_a_recogniser_reader_and_critic_needs_a_recogniser_critic() -> None:
    with pytest.raises(ValueError, match="expression_reader: recogniser"):
        tiny_task(generator=_generator(EXPRESSIONS), expression_reader_init="runs/some/recogniser")
    with pytest.raises(ValueError, match="no recogniser_critic is set"):
        tiny_task(generator=_generator(EXPRESSIONS, reader="recogniser"), expression_reader_init="critic")
    task = tiny_task(generator=_generator(EXPRESSIONS, reader="recogniser"), expression_reader_init="missing/run")
    with pytest.raises(FileNotFoundError, match="expression_reader_init: missing/run does not exist"):
        task._start_reader("missing/run")


def test_a_forced_expression_conditions_the_decoder_on_its_one_hot_and_minus_one_keeps_the_readers() -> None:
    generator = _generator(EXPRESSIONS)
    assert generator.expression_modulation is not None and generator.expression_head is not None
    torch.nn.init.normal_(generator.expression_modulation.weight, std=1.0)
    faces, mask = torch.randn(3, 3, 16, 16), torch.zeros(3, 1, 16, 16)
    mask[:, :, 8:, :] = 1.0
    read_image, read_logits = generator.forward_with_expression(faces, mask)
    forced = torch.tensor([2, -1, 5])
    image, logits = generator.forward_with_expression(faces, mask, forced)
    torch.testing.assert_close(logits, read_logits)  # the reader's logits either way (its loss needs them)
    torch.testing.assert_close(image[1], read_image[1])  # -1: what the reader read
    with torch.no_grad():  # a forced face is drawn as if the reader were certain of that class
        generator.expression_head.bias[2] += 1e4
        certain_of_2 = generator(faces[:1], mask[:1])
    torch.testing.assert_close(image[0], certain_of_2[0])
    assert not torch.allclose(image[2], read_image[2])
    with pytest.raises(ValueError, match="reads none: set expression_classes"):
        _generator().forward_with_expression(faces, mask, forced)


def test_teacher_forcing_acts_in_training_only_on_labelled_faces_and_needs_a_reader() -> None:
    with pytest.raises(ValueError, match="generator reads none"):
        tiny_task(expression_teacher_forcing=0.5)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        tiny_task(generator=_generator(EXPRESSIONS), expression_teacher_forcing=1.5)
    batch = next(iter(restoration_loader(4, 16, batch_size=4)))
    batch["expr"][0] = -1  # an unlabelled face is never forced
    task = tiny_task(generator=_generator(EXPRESSIONS), expression_teacher_forcing=1.0, predicted_mask_probability=0)
    generator = task.restorer.generator
    assert generator.expression_modulation is not None
    torch.nn.init.normal_(generator.expression_modulation.weight, std=1.0)
    forced = generator.forward_with_expression(batch["face"], batch["occlusion_mask"], batch["expr"])[0]
    read = generator.forward_with_expression(batch["face"], batch["occlusion_mask"])[0]
    out = task._restore_for_training(batch)
    torch.testing.assert_close(out["generated"], forced)
    torch.testing.assert_close(out["generated"][0], read[0])
    task.hparams.expression_teacher_forcing = 0.0
    torch.testing.assert_close(task._restore_for_training(batch)["generated"], read)
