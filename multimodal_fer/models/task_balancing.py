"""Task balancing: how the expression, AU and valence/arousal losses combine into one training loss.

Every method is an ``nn.Module`` chosen in the config (``model.init_args.task_balancing``) and owned by
:class:`~multimodal_fer.models.losses.MultitaskLoss`, which calls :meth:`TaskBalancing.set_tasks` with the
label space's tasks when it is built. Learned parameters are therefore created inside the LightningModule
before its optimiser, so they are trained with the model and saved in its checkpoints.

A method receives one scalar loss per task and one "has labels" flag per task. A task without labels in a
batch has the exact loss 0 (see :mod:`multimodal_fer.models.losses`); the methods leave it out of their
sums with ``torch.where`` (no host synchronisation), so its learned parameters get an exact zero gradient:
they stay in the autograd graph every step, as DDP without ``find_unused_parameters`` requires.

Methods:
    * :class:`FixedWeighting`: ``sum_t w_t L_t`` with constant weights.
    * :class:`UncertaintyWeighting`: learned homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).
    * :class:`GradNorm`: learned weights that equalise the tasks' gradient norms on the shared features,
      scaled by their relative training rates (Chen et al., ICML 2018).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: The tasks a multitask FER model can predict, in canonical order.
TASKS = ("expr", "au", "va")


class TaskBalancing(nn.Module):
    """Base class: combine per-task losses into the loss the model is trained with.

    Subclasses with learned state create it in :meth:`_build`, called once by :meth:`set_tasks`.

    Args:
        lr: learning rate of the method's own parameters (None: the optimiser's). They always form their own
            optimiser parameter group without weight decay (see :meth:`parameter_group`).

    """

    #: Whether :meth:`forward` needs the shared representation ``shared`` in training.
    needs_shared_features: bool = False

    def __init__(self, lr: float | None = None) -> None:
        super().__init__()
        if lr is not None and lr <= 0:
            raise ValueError(f"lr={lr} must be positive (or None to use the optimiser's).")
        self.lr = lr
        self.tasks: tuple[str, ...] = ()

    def set_tasks(self, tasks: Sequence[str]) -> None:
        """Fix the tasks to balance and create any learned state (one entry per task, in this order).

        Args:
            tasks: a non-empty subset of ``("expr", "au", "va")``, e.g. ``label_space.tasks``.

        Raises:
            ValueError: unknown or repeated tasks, none at all, or other tasks than an earlier call.

        """
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names among {TASKS}, got {list(tasks)}.")
        if self.tasks:
            if self.tasks != tasks:
                raise ValueError(f"{type(self).__name__} already balances {list(self.tasks)}, not {list(tasks)}.")
            return
        self.tasks = tasks
        self._build(tasks)

    def _build(self, tasks: tuple[str, ...]) -> None:
        """Create learned parameters and buffers for ``tasks`` (default: none)."""

    def _stack(self, losses: Mapping[str, Tensor], labeled: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per-task losses and flags as vectors in :attr:`tasks` order; missing tasks count as unlabeled.

        Args:
            losses: scalar loss per task.
            labeled: bool scalar per task, whether the batch has labels for it.

        Returns:
            ``values`` float32 (T,) and ``active`` bool (T,).

        """
        if not self.tasks:
            raise RuntimeError(f"{type(self).__name__}.set_tasks(...) must be called before its first use.")
        extra = sorted(set(losses) - set(self.tasks))
        if extra:
            raise ValueError(f"Losses for {extra} were given, but {type(self).__name__} balances {list(self.tasks)}.")
        ref = next(iter(losses.values()))
        zero = torch.zeros((), dtype=torch.float32, device=ref.device)
        values = torch.stack([losses[t].float() if t in losses else zero for t in self.tasks])
        flags = [
            torch.as_tensor(labeled.get(t, False), dtype=torch.bool, device=ref.device) if t in losses else zero.bool()
            for t in self.tasks
        ]
        return values, torch.stack(flags)

    def forward(
        self, losses: Mapping[str, Tensor], labeled: Mapping[str, Tensor], shared: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Combine the task losses.

        Args:
            losses: scalar loss per task (a subset of :attr:`tasks`), 0 where the batch has no labels.
            labeled: bool scalar (or bool) per task: whether the batch has labels for it.
            shared: the shared representation z (B, D) that feeds every head, with its autograd graph; only
                methods with :attr:`needs_shared_features` read it.

        Returns:
            ``loss``: the scalar loss the model is trained with, and ``auxiliary``: a scalar loss that trains
            only the method's own parameters (to be added before ``backward``), or None if the method has none.

        """
        raise NotImplementedError

    def task_weights(self) -> dict[str, Tensor]:
        """Current effective weight of each task (detached scalars), for logging."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Project learned parameters back to their feasible set after an optimiser step (default: nothing)."""

    def parameter_group(self) -> dict[str, Any] | None:
        """The optimiser parameter group of the method's parameters, or None if it has none.

        The group has no weight decay: decay would pull the log-variances of :class:`UncertaintyWeighting`
        towards 0 (weight 1) and is meaningless for the renormalised weights of :class:`GradNorm`.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None
        group: dict[str, Any] = {"params": params, "weight_decay": 0.0}
        if self.lr is not None:
            group["lr"] = self.lr
        return group


class FixedWeighting(TaskBalancing):
    """Constant weights: ``loss = sum_t w_t L_t``.

    Args:
        weights: weight per task name (``expr``, ``au``, ``va``); tasks not named get 1.0.

    """

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(TASKS))
        if unknown:
            raise ValueError(f"FixedWeighting weights name unknown tasks {unknown}; known: {list(TASKS)}.")
        self.weights = {task: float(weights.get(task, 1.0)) for task in TASKS}

    def forward(
        self, losses: Mapping[str, Tensor], labeled: Mapping[str, Tensor], shared: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Weighted sum of the given task losses (see :meth:`TaskBalancing.forward`); no auxiliary loss."""
        if not losses:
            raise ValueError("No task loss to combine.")
        extra = sorted(set(losses) - set(self.tasks or TASKS))
        if extra:
            raise ValueError(f"Losses for {extra} were given, but FixedWeighting balances {list(self.tasks)}.")
        weighted = [self.weights[task] * loss.float() for task, loss in losses.items()]
        return torch.stack(weighted).sum(), None

    def task_weights(self) -> dict[str, Tensor]:
        """The constant weights of the bound tasks."""
        return {task: torch.tensor(self.weights[task]) for task in self.tasks}


class UncertaintyWeighting(TaskBalancing):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Each task t has a learned log-variance ``s_t = log sigma_t^2`` and

        ``loss = sum_t [exp(-s_t) * L_t + s_t]``   over the tasks labeled in the batch.

    The paper derives ``1/(2 sigma^2) L + log sigma = 1/2 (exp(-s) L + s)`` for a Gaussian regression
    likelihood and (approximately) ``exp(-s) L + s / 2`` for a softmax classifier. This package uses the same
    form ``exp(-s) L + s`` for every task on purpose: its losses are not all likelihoods (``1 - CCC`` is not
    a Gaussian negative log-likelihood, so no factor 1/2 is principled for it), and with the uniform form
    every task's optimum is ``exp(s_t) = L_t``, i.e. the effective weight ``exp(-s_t)`` tends to ``1 / L_t``
    for each task alike; the regression form only halves the whole objective, while mixing the forms would
    favour classification over regression by a factor of 2 at the optimum.

    A task without labels in a batch is left out (its regulariser ``s_t`` too, otherwise an unlabeled task
    would drive its ``s_t`` down for ever); its ``s_t`` gets an exact zero gradient that step.
    As ``L_t`` approaches 0 (e.g. a nearly perfect CCC) ``exp(-s_t)`` grows without bound; watch the logged
    ``train/{task}/task_weight``.

    Args:
        init_log_variance: initial ``s_t`` of every task (0: every weight starts at 1).
        lr: learning rate of the log-variances (None: the optimiser's).

    """

    def __init__(self, init_log_variance: float = 0.0, lr: float | None = None) -> None:
        super().__init__(lr=lr)
        self.init_log_variance = float(init_log_variance)

    def _build(self, tasks: tuple[str, ...]) -> None:
        self.log_variance = nn.Parameter(torch.full((len(tasks),), self.init_log_variance))

    def forward(
        self, losses: Mapping[str, Tensor], labeled: Mapping[str, Tensor], shared: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``sum_t [exp(-s_t) L_t + s_t]`` over labeled tasks (see :meth:`TaskBalancing.forward`)."""
        values, active = self._stack(losses, labeled)
        s = self.log_variance
        per_task = torch.exp(-s) * values + s
        return torch.where(active, per_task, torch.zeros_like(per_task)).sum(), None

    def task_weights(self) -> dict[str, Tensor]:
        """``exp(-s_t)`` per task."""
        weights = torch.exp(-self.log_variance.detach())
        return {task: weights[i] for i, task in enumerate(self.tasks)}


class GradNorm(TaskBalancing):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018) on the shared fused features.

    Learned weights ``w_t > 0`` (initially 1) scale the task losses. At every training step, for the tasks
    labeled in the batch:

    * ``g_t = ||dL_t/dz||`` is the norm of the gradient of the unweighted task loss with respect to the shared
      representation z (B, D) that feeds every head (computed with ``torch.autograd.grad(...,
      retain_graph=True)``; it goes back through the heads only and is treated as a constant, so no
      second-order graph through the model is built). ``G_t = w_t g_t``.
    * ``L_t(0)`` is the task's loss at the first step where it had labels (kept in buffers, so checkpoints
      restore it); ``r_t = (L_t / L_t(0)) / mean_k(L_k / L_k(0))`` is its relative inverse training rate.
    * ``auxiliary = sum_t |G_t - mean_k(G_k) * r_t^alpha|``, where the target ``mean_k(G_k) r_t^alpha`` is a
      constant (as in the paper); only ``w`` receives its gradient.

    The model is trained with ``loss = sum_t w_t.detach() * L_t``, so the model loss never reaches ``w``.
    After each optimiser step :meth:`after_optimizer_step` clamps ``w`` to a small positive floor and
    renormalises it to sum to the number of tasks T. Both losses are summed before the backward pass in
    automatic optimisation with one optimiser; ``w`` joins it in its own parameter group (no weight decay).

    A task without labels in a batch gets no GradNorm update that step (an exact zero gradient, so ``w``
    takes part in every backward pass and DDP needs no ``find_unused_parameters``; a momentum-based optimiser
    may still move it a little). With fewer than two labeled tasks the auxiliary loss is 0. Under DDP
    every process computes its own ``L_t(0)`` at the first step; from the next step on DDP's buffer broadcast
    makes everyone use rank 0's values, and the gradient of ``w`` is averaged like any other.

    Getting z: the multitask FER task registers a forward pre-hook on the model's heads that keeps their
    input (see :class:`~multimodal_fer.tasks.MultitaskFERTask`).

    Args:
        alpha: strength of the restoring force towards equal training rates (the paper's alpha, 0 = equal
            gradient norms).
        lr: learning rate of the weights (None: the optimiser's).

    """

    needs_shared_features = True

    #: Floor applied to the weights before renormalisation, so they stay positive.
    min_weight = 1e-3

    def __init__(self, alpha: float = 1.5, lr: float | None = None) -> None:
        super().__init__(lr=lr)
        if alpha < 0:
            raise ValueError(f"alpha={alpha} must be non-negative.")
        self.alpha = float(alpha)

    def _build(self, tasks: tuple[str, ...]) -> None:
        self.weights = nn.Parameter(torch.ones(len(tasks)))
        self.register_buffer("initial_losses", torch.zeros(len(tasks)), persistent=True)
        self.register_buffer("initialized", torch.zeros(len(tasks), dtype=torch.bool), persistent=True)

    def forward(
        self, losses: Mapping[str, Tensor], labeled: Mapping[str, Tensor], shared: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``sum_t w_t.detach() L_t`` and, when training with a graph, the GradNorm loss of ``w``.

        Args:
            losses: see :meth:`TaskBalancing.forward`.
            labeled: see :meth:`TaskBalancing.forward`.
            shared: the shared representation z (B, D) with its graph; needed in training.

        Returns:
            The model loss and the GradNorm loss (None outside training, under ``torch.no_grad`` or when the
            losses have no graph).

        Raises:
            ValueError: training with a graph but without ``shared``.

        """
        values, active = self._stack(losses, labeled)
        loss = (self.weights.detach() * values).sum()
        if not (self.training and torch.is_grad_enabled() and values.requires_grad):
            return loss, None
        if shared is None:
            raise ValueError("GradNorm needs the shared representation z (B, D) that feeds every head in training.")
        norms = []
        for task in self.tasks:
            term = losses.get(task)
            grad = None
            if term is not None and term.requires_grad and shared.requires_grad:
                (grad,) = torch.autograd.grad(term, shared, retain_graph=True, allow_unused=True)
            norms.append(grad.float().norm() if grad is not None else values.new_zeros(()))
        g = torch.stack(norms).detach()
        current = values.detach()
        with torch.no_grad():
            first = active & ~self.initialized
            self.initial_losses.copy_(torch.where(first, current, self.initial_losses))
            self.initialized.logical_or_(active)
        tiny = torch.finfo(current.dtype).tiny
        ratio = torch.where(active, current / self.initial_losses.clamp_min(tiny), torch.zeros_like(current))
        count = active.sum().clamp_min(1).to(current.dtype)
        rate = torch.where(active, ratio / (ratio.sum() / count).clamp_min(tiny), torch.ones_like(current))
        norm = self.weights * g  # G_t: the only place w enters the auxiliary loss
        mean_norm = torch.where(active, norm.detach(), torch.zeros_like(current)).sum() / count
        target = mean_norm * rate**self.alpha
        gap = (norm - target).abs()
        return loss, torch.where(active, gap, torch.zeros_like(gap)).sum()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Clamp the weights to a positive floor and renormalise them to sum to the number of tasks."""
        weights = self.weights.clamp_min(self.min_weight)
        self.weights.copy_(weights * (len(self.tasks) / weights.sum()))

    def task_weights(self) -> dict[str, Tensor]:
        """The current ``w_t`` per task."""
        weights = self.weights.detach()
        return {task: weights[i] for i, task in enumerate(self.tasks)}
