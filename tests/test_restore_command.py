"""``mfer restore``: a trained restorer on one's own image files, with the PNGs and the table it writes."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from multimodal_fer.cli import main
from multimodal_fer.errors import DataError
from multimodal_fer.inference.face_restoration import RESTORATIONS_CSV, restore_faces
from multimodal_fer.models.restoration import (
    RESTORER_CHECKPOINT_KEY,
    FaceRestorer,
    GatedUNetGenerator,
    OcclusionMaskNet,
)
from multimodal_fer.preprocessing.media_processor import MediaPreprocessing

SIZE = 32


class SquareMask(nn.Module):
    """A stand-in mask network that marks the same square of every face (rows and columns 8 to 15)."""

    def forward(self, image: Tensor) -> Tensor:
        """Faces (B, 3, S, S) → logits (B, 1, S, S): +10 inside the square, -10 outside."""
        logits = torch.full((image.shape[0], 1, SIZE, SIZE), -10.0)
        logits[..., 8:16, 8:16] = 10.0
        return logits


class SquareAndStrandMask(SquareMask):
    """The square plus a one-pixel strand (row 24), which an opening of radius 1 removes."""

    def forward(self, image: Tensor) -> Tensor:
        logits = super().forward(image)
        logits[..., 24, :] = 10.0
        return logits


def _restorer(**options: object) -> FaceRestorer:
    torch.manual_seed(0)
    generator = GatedUNetGenerator(widths=(4, 8, 8), dilations=(2,), extra_convs=0, stem_kernel=3)
    restorer = FaceRestorer(OcclusionMaskNet(widths=(4, 8)), generator, mask_dilation=0, **options)  # type: ignore[arg-type]
    restorer.image_size.fill_(SIZE)
    return restorer.eval()


def _faces(folder: Path, count: int, size: int = SIZE) -> list[np.ndarray]:
    """Write ``count`` random RGB crops as PNGs (the last in a subfolder) and return them as (H, W, 3) arrays."""
    rng = np.random.default_rng(0)
    faces = []
    for k in range(count):
        face = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = folder / ("deeper" if k == count - 1 else "") / f"face{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(path)
        faces.append(face)
    return faces


def _table(output: Path) -> dict[str, dict[str, str]]:
    with (output / RESTORATIONS_CSV).open() as handle:
        return {Path(row["source"]).name: row for row in csv.DictReader(handle)}


def _said(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed (the console writes to stderr), on one line."""
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_only_the_masked_pixels_change_and_the_rest_is_the_crop_byte_for_byte(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "in", 3)
    restorer = _restorer()
    restorer.mask_net = SquareMask()
    counts = restore_faces(restorer, [tmp_path / "in"], tmp_path / "out", aligned=True, batch_size=2)
    assert (counts.inputs, counts.written, counts.errors) == (3, 3, 0)
    square = np.zeros((SIZE, SIZE), dtype=bool)
    square[8:16, 8:16] = True
    rows = _table(tmp_path / "out")
    for k, face in enumerate(faces):
        row = rows[f"face{k}.png"]
        assert row["status"] == "ok" and row["filled"] == "yes"
        assert float(row["filled_percent"]) == pytest.approx(100 * 64 / SIZE**2, abs=0.01)
        crop = _png(tmp_path / "out" / row["face"])
        restored = _png(tmp_path / "out" / row["restored"])
        mask = _png(tmp_path / "out" / row["mask"])
        np.testing.assert_array_equal(crop, face)  # aligned crops of the restorer's size are taken as they are
        np.testing.assert_array_equal(mask > 0, square)
        np.testing.assert_array_equal(restored[~square], face[~square])
        assert (restored[square] != face[square]).any()  # the generator painted the square
    assert rows["face2.png"]["face"] == str(Path("deeper") / "face2.face.png")  # the inputs' folders are mirrored


def test_relative_input_paths_are_mirrored_below_their_common_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _faces(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)
    restore_faces(_restorer(), [Path("in/face0.png"), Path("in/deeper")], Path("out"), aligned=True)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.restored.png")) == [
        "deeper/face1.restored.png",
        "face0.restored.png",
    ]


def test_faces_below_the_minimum_area_are_written_unchanged(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "in", 1)
    restorer = _restorer(min_occluded_fraction=0.5)  # the square covers 6 % of the face
    restorer.mask_net = SquareMask()
    restore_faces(restorer, [tmp_path / "in"], tmp_path / "out", aligned=True)
    row = _table(tmp_path / "out")["face0.png"]
    assert (row["filled"], float(row["filled_percent"]), float(row["detected_percent"])) == ("no", 0.0, 6.25)
    np.testing.assert_array_equal(_png(tmp_path / "out" / row["restored"]), faces[0])
    assert not _png(tmp_path / "out" / row["mask"]).any()


def test_the_detected_share_is_what_the_minimum_area_rule_measures_after_the_opening(tmp_path: Path) -> None:
    _faces(tmp_path / "in", 1)
    restorer = _restorer(mask_opening=1, min_occluded_fraction=0.07)  # the square is 6.25 %, with the strand 9.4 %
    restorer.mask_net = SquareAndStrandMask()
    restore_faces(restorer, [tmp_path / "in"], tmp_path / "out", aligned=True)
    row = _table(tmp_path / "out")["face0.png"]
    assert (row["filled"], float(row["detected_percent"])) == ("no", 6.25)


def test_bad_inputs_are_rows_with_their_reasons_and_the_others_are_restored(tmp_path: Path) -> None:
    _faces(tmp_path / "in", 2, size=48)  # resized to the restorer's 32 pixels
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    (tmp_path / "in" / "voice.wav").write_bytes(b"RIFF")
    counts = restore_faces(_restorer(), [tmp_path / "in", tmp_path / "gone.png"], tmp_path / "out", aligned=True)
    assert (counts.inputs, counts.written, counts.errors) == (6, 2, 4)
    rows = _table(tmp_path / "out")
    assert rows["broken.jpg"]["reason"].startswith("unreadable image")
    assert rows["empty.png"]["reason"] == "empty image file"
    assert "audio" in rows["voice.wav"]["reason"]
    assert rows["gone.png"]["reason"] == "no such file or folder"
    assert _png(tmp_path / "out" / rows["face0.png"]["restored"]).shape == (SIZE, SIZE, 3)


def test_an_earlier_run_is_replaced_only_when_asked(tmp_path: Path) -> None:
    _faces(tmp_path / "in", 1)
    restore_faces(_restorer(), [tmp_path / "in"], tmp_path / "out", aligned=True)
    with pytest.raises(DataError, match="--overwrite"):
        restore_faces(_restorer(), [tmp_path / "in"], tmp_path / "out", aligned=True)
    counts = restore_faces(_restorer(), [tmp_path / "in"], tmp_path / "out", aligned=True, overwrite=True)
    assert counts.written == 1
    inside = tmp_path / "in" / "restored"  # an output folder inside the input folder: its PNGs are not inputs
    restore_faces(_restorer(), [tmp_path / "in"], inside, aligned=True)
    counts = restore_faces(_restorer(), [tmp_path / "in"], inside, aligned=True, overwrite=True)
    assert (counts.inputs, counts.written) == (1, 1)


def test_the_command_loads_a_restorer_checkpoint_and_refuses_a_file_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _faces(tmp_path / "in", 2)
    checkpoint = tmp_path / "restorer.ckpt"
    torch.save({RESTORER_CHECKPOINT_KEY: _restorer().export()}, checkpoint)
    inputs = ["--inputs", str(tmp_path / "in")]
    main(["restore", "--restorer", str(checkpoint), *inputs, "--output", str(tmp_path / "out"), "--aligned"])
    assert "2 of 2 inputs" in _said(capsys)
    assert sorted(p.name for p in (tmp_path / "out").glob("face0.*")) == [
        "face0.face.png",
        "face0.mask.png",
        "face0.restored.png",
    ]
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="not a restoration checkpoint"):
        main(["restore", "--restorer", str(tmp_path / "other.ckpt"), *inputs, "--output", str(tmp_path / "o2")])


def test_an_image_without_a_face_is_a_row_saying_so(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    Image.fromarray(np.full((120, 120, 3), 128, dtype=np.uint8)).save(tmp_path / "wall.png")
    settings = MediaPreprocessing(image_size=SIZE, face_detector="haar")
    counts = restore_faces(_restorer(), [tmp_path / "wall.png"], tmp_path / "out", settings)
    assert (counts.written, counts.errors) == (0, 1)
    assert _table(tmp_path / "out")["wall.png"]["reason"].startswith("no face found")


def test_known_masks_are_filled_exactly_and_a_missing_one_is_a_row(tmp_path: Path) -> None:
    faces = _faces(tmp_path / "in", 3)
    known = np.zeros((SIZE * 2, SIZE * 2), dtype=np.uint8)  # drawn at twice the size: resized to the crop
    known[:20, :] = 255
    (tmp_path / "masks" / "deeper").mkdir(parents=True)
    Image.fromarray(known).save(tmp_path / "masks" / "face0.png")
    Image.fromarray(known).save(tmp_path / "masks" / "deeper" / "face2.bmp")
    restorer = _restorer(min_occluded_fraction=0.9)  # known masks are filled whatever their area
    counts = restore_faces(restorer, [tmp_path / "in"], tmp_path / "out", aligned=True, masks=tmp_path / "masks")
    assert (counts.written, counts.errors) == (2, 1)
    rows = _table(tmp_path / "out")
    assert rows["face1.png"]["reason"].startswith("no mask image")
    top = np.zeros((SIZE, SIZE), dtype=bool)
    top[:10] = True
    for name, face in (("face0.png", faces[0]), ("face2.png", faces[2])):
        row = rows[name]
        assert (row["filled"], float(row["filled_percent"])) == ("yes", pytest.approx(100 * 10 / SIZE))
        np.testing.assert_array_equal(_png(tmp_path / "out" / row["mask"]) > 0, top)
        np.testing.assert_array_equal(_png(tmp_path / "out" / row["restored"])[~top], face[~top])


def test_known_masks_need_aligned_crops(tmp_path: Path) -> None:
    _faces(tmp_path / "in", 1)
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="--aligned"):
        restore_faces(_restorer(), [tmp_path / "in"], tmp_path / "out", masks=tmp_path / "masks")
    with pytest.raises(DataError, match="does not exist"):
        restore_faces(_restorer(), [tmp_path / "in"], tmp_path / "out", aligned=True, masks=tmp_path / "none")
