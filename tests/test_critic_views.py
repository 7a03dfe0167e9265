"""Random views of restored and clean faces for the critics (``critic_jitter``)."""

from pathlib import Path

import pytest
import torch

from multimodal_fer.models.restoration.critic_views import jittered_views

from restoration_fakes import restoration_loader, tiny_task, tiny_trainer


def _draws(batch: int, max_shift: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shifts (B, 2) as (x, y) and mirror flags (B,) that ``jittered_views`` draws from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 2), generator=generator)
    return shifts, torch.rand(batch, generator=generator).lt(0.5)


def test_views_move_whole_pixels_and_mirror_without_interpolating() -> None:
    faces = torch.randn(32, 3, 16, 16)
    restored, _ = jittered_views(faces, faces.clone(), 3, torch.Generator().manual_seed(7))
    shifts, mirrored = _draws(32, 3, seed=7)
    assert mirrored.any() and (~mirrored).any() and (shifts != 0).any()
    inner = slice(3, 13)  # away from the reflected border
    for k in range(32):
        source = faces[k].flip(-1) if mirrored[k] else faces[k]
        dx, dy = shifts[k].tolist()
        dx = -dx if mirrored[k] else dx  # the shift is applied before mirroring
        expected = torch.roll(source, shifts=(-dy, -dx), dims=(1, 2))
        torch.testing.assert_close(restored[k][:, inner, inner], expected[:, inner, inner], atol=1e-5, rtol=0)


def test_a_face_and_its_clean_version_get_the_same_view_and_gradients_reach_the_restored_one() -> None:
    restored = torch.randn(8, 3, 16, 16, requires_grad=True)
    clean = restored.detach() + 1.0
    restored_view, clean_view = jittered_views(restored, clean, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(clean_view - restored_view.detach(), torch.ones_like(clean), atol=1e-5, rtol=0)
    restored_view.sum().backward()
    assert restored.grad is not None and restored.grad.abs().sum() > 0
    same, also = jittered_views(restored, clean, 0)
    assert same is restored and also is clean


def test_bad_shifts_and_shapes_are_refused() -> None:
    faces = torch.zeros(2, 3, 16, 16)
    with pytest.raises(ValueError, match="max_shift"):
        jittered_views(faces, faces, -1)
    with pytest.raises(ValueError, match="max_shift"):
        jittered_views(faces, faces, 8)
    with pytest.raises(ValueError, match="must match"):
        jittered_views(faces, torch.zeros(2, 3, 8, 8), 1)
    with pytest.raises(ValueError, match="critic_jitter"):
        tiny_task(critic_jitter=-1)


def test_the_task_judges_views_in_training_and_the_faces_themselves_in_evaluation() -> None:
    batch = next(iter(restoration_loader(4, 16, batch_size=4)))
    plain, jittered = tiny_task(seed=0), tiny_task(seed=0, critic_jitter=2)
    for task in (plain, jittered):
        task.eval()
    with torch.no_grad():
        out = plain.restorer(batch["face"], batch["occlusion_mask"])
        evaluated = [task._restorer_losses(batch, out)[0] for task in (plain, jittered)]
    for name in ("feature", "consistency", "label", "total"):
        torch.testing.assert_close(evaluated[0][name], evaluated[1][name])
    for task in (plain, jittered):
        task.train()
    torch.manual_seed(1)
    with torch.no_grad():
        trained = [task._restorer_losses(batch, out)[0] for task in (plain, jittered)]
    assert not torch.allclose(trained[0]["feature"], trained[1]["feature"])
    torch.testing.assert_close(trained[0]["hole_l1"], trained[1]["hole_l1"])  # the fill itself is scored as it is


def test_a_fit_with_jittered_critic_views_runs(tmp_path: Path) -> None:
    task = tiny_task(critic_jitter=2)
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    trainer.fit(task, restoration_loader(8, 16, batch_size=4), restoration_loader(4, 16, batch_size=4))
    assert trainer.state.finished
