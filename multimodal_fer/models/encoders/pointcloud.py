"""Point-cloud depth encoders: PointNet and DGCNN over clouds of xyz + normals, (B, N, 6).

Both read the ``depth`` modality when the data module loads it as points (``depth_input: points``), after
:func:`~multimodal_fer.datamodules.device_transforms.normalize_points` (centred, unit sphere, unit normals).
Both are invariant to the order of the points: per-point layers are shared, pooling is symmetric, neighbour
graphs are sets, and the points chosen as tokens are picked by geometry (farthest-point sampling), not by
position in the input.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_fer.models.encoders.base import Encoder

#: Elements of one block of the temporaries that grow with N² or k: the pairwise distances in :func:`knn_indices`
#: and the gathered neighbour features in :class:`EdgeConv` (2**24 float32 = 64 MiB).
KNN_BLOCK_ELEMENTS = 2**24

Pooling = Literal["max", "max_mean"]


def check_cloud(x: Tensor, in_channels: int, owner: str) -> None:
    """Refuse anything but a batch of point clouds (B, N, in_channels) with N >= 1.

    Raises:
        ValueError: naming the shape received and how to get points.
    """
    if x.ndim != 3 or x.shape[-1] != in_channels or x.shape[1] < 1:
        raise ValueError(
            f"{owner} reads point clouds (B, N, {in_channels}) (xyz + normals), got a tensor of shape "
            f"{tuple(x.shape)}. Load depth as points with data.init_args.depth_input: points, or use DepthCNN "
            "for depth maps."
        )


def farthest_point_indices(xyz: Tensor, count: int) -> Tensor:
    """Farthest-point sampling: ``count`` well-spread points of each cloud, in the order they are picked.

    The first pick is the point farthest from the centroid, each next one the point farthest from all picked
    so far, so the picks (and their order) depend on the geometry only, not on the order of the input points.

    Args:
        xyz: coordinates (B, N, 3).
        count: points to pick, at most N.

    Returns:
        long (B, count) indices into N.
    """
    with torch.no_grad():
        xyz = xyz.float()
        batch, num_points, _ = xyz.shape
        rows = torch.arange(batch, device=xyz.device)
        chosen = torch.empty(batch, count, dtype=torch.long, device=xyz.device)
        current = (xyz - xyz.mean(dim=1, keepdim=True)).square().sum(-1).argmax(dim=1)  # (B,)
        nearest = torch.full((batch, num_points), float("inf"), device=xyz.device)
        for step in range(count):
            chosen[:, step] = current
            nearest = torch.minimum(nearest, (xyz - xyz[rows, current].unsqueeze(1)).square().sum(-1))
            current = nearest.argmax(dim=1)
    return chosen


def knn_indices(features: Tensor, k: int, block_elements: int = KNN_BLOCK_ELEMENTS) -> Tensor:
    """Each point's ``k`` nearest points (itself included) by Euclidean distance in feature space.

    The (B, N, N) distance matrix is built a block of query points at a time, so memory stays near
    ``block_elements`` floats (64 MiB) whatever N; no gradient flows through the indices. Distances are
    computed in float32 (also under autocast).

    Args:
        features: (B, N, C).
        k: neighbours per point; clipped to N.
        block_elements: size of one block of the distance matrix.

    Returns:
        long (B, N, min(k, N)).
    """
    with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
        points = features.float()
        batch, num_points, _ = points.shape
        k = min(k, num_points)
        squared = points.square().sum(dim=-1)  # (B, N)
        keys = points.transpose(1, 2)  # (B, C, N)
        rows_per_block = max(1, block_elements // max(1, batch * num_points))
        blocks = []
        for start in range(0, num_points, rows_per_block):
            stop = min(start + rows_per_block, num_points)
            # |x_j|² − 2 x_i·x_j: the squared distance less |x_i|², which does not change a row's ranking.
            distance = torch.baddbmm(squared[:, None, :], points[:, start:stop], keys, alpha=-2.0)  # (B, r, N)
            blocks.append(distance.topk(k, dim=-1, largest=False).indices)  # (B, r, k)
    return torch.cat(blocks, dim=1)


def _gather_points(values: Tensor, index: Tensor) -> Tensor:
    """Pick points: values (B, N, C) at point indices (B, M) → (B, M, C)."""
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


class NeighbourGraph:
    """A batch of k-nearest-neighbour graphs as flat edge lists and sparse adjacency matrices.

    Points of all clouds are numbered ``b * N + n``; row ``i`` of the adjacency holds ones at point ``i``'s
    ``k`` neighbours.

    Args:
        neighbours: long (B, N, k) indices of each point's neighbours within its cloud.
    """

    def __init__(self, neighbours: Tensor) -> None:
        batch, num_points, k = neighbours.shape
        self.k = k
        self.num_nodes = batch * num_points
        offsets = torch.arange(batch, device=neighbours.device).view(-1, 1, 1) * num_points
        self.targets = (neighbours + offsets).reshape(-1)  # (B·N·k,) neighbour of each edge, row-major by source
        sources = torch.arange(self.num_nodes, device=neighbours.device).repeat_interleave(k)
        self.in_degree = torch.bincount(self.targets, minlength=self.num_nodes)  # (B·N,)
        ones = torch.ones(self.targets.numel(), device=neighbours.device)
        rows = torch.arange(0, self.targets.numel() + 1, k, device=neighbours.device)
        rows_t = torch.zeros(self.num_nodes + 1, dtype=torch.long, device=neighbours.device)
        rows_t[1:] = torch.cumsum(self.in_degree, dim=0)
        columns_t = sources[torch.argsort(self.targets, stable=True)]
        # CSR: the fastest sparse product on CPU (several times COO's); torch warns that it is in beta.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
            self.adjacency = self._csr(rows, self.targets, ones)
            self.adjacency_t = self._csr(rows_t, columns_t, ones)

    def _csr(self, rows: Tensor, columns: Tensor, values: Tensor) -> Tensor:
        size = (self.num_nodes, self.num_nodes)
        return torch.sparse_csr_tensor(rows, columns, values, size=size, check_invariants=False)

    def neighbour_sum(self, values: Tensor) -> Tensor:
        """Sum over each point's neighbours: float32 (B·N, C) → (B·N, C), differentiable in ``values``."""
        return _NeighbourSum.apply(values, self.adjacency, self.adjacency_t)


class _NeighbourSum(torch.autograd.Function):
    """``adjacency @ values`` whose backward is ``adjacency_t @ grad`` (no sparse transpose on the fly)."""

    @staticmethod
    def forward(ctx, values: Tensor, adjacency: Tensor, adjacency_t: Tensor) -> Tensor:  # noqa: D102
        ctx.adjacency_t = adjacency_t
        with torch.autocast(values.device.type, enabled=False):  # sparse products stay float32
            return adjacency @ values.float()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102
        with torch.autocast(grad.device.type, enabled=False):
            return ctx.adjacency_t @ grad.float(), None, None


class EdgeConv(nn.Module):
    """EdgeConv (Wang et al., 2019) with a linear edge function, batch norm, LeakyReLU and max over neighbours.

    For point ``i`` with neighbours ``j``: ``out_i = max_j LeakyReLU(BN(W [x_i, x_j - x_i]))`` — the usual
    1x1 convolution over edge features, with batch-norm statistics over all edges — computed without keeping
    the (B, N, k, C) edge tensor for the backward pass. The edge value splits as ``a_i + b_j`` with
    ``a = (W_1 - W_2) x`` and ``b = W_2 x``; batch norm and LeakyReLU are monotonic per channel (increasing
    where the batch-norm weight is >= 0, decreasing elsewhere), so the max over neighbours is taken at the
    neighbour with the largest (or smallest) ``b_j``, found without gradient; the edge statistics come from
    in-degrees and sparse neighbour sums. Memory kept for backward is O(B·N·C) per layer plus the neighbour
    lists (O(B·N·k) indices, independent of C) instead of O(B·N·k·C), and the result equals the direct
    computation (a test compares them).

    Batch statistics are per process (not synchronised under DDP, unlike ``SyncBatchNorm``).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        negative_slope: slope of the LeakyReLU.
        momentum: running-statistics momentum, as in ``nn.BatchNorm``.
        eps: added to the variance.
    """

    def __init__(
        self, in_channels: int, out_channels: int, negative_slope: float = 0.2, momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.centre = nn.Linear(in_channels, out_channels, bias=False)  # W_1 - W_2
        self.neighbour = nn.Linear(in_channels, out_channels, bias=False)  # W_2
        self.weight = nn.Parameter(torch.ones(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("running_mean", torch.zeros(out_channels))
        self.register_buffer("running_var", torch.ones(out_channels))
        self.negative_slope = negative_slope
        self.momentum = momentum
        self.eps = eps

    def forward(self, x: Tensor, neighbours: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            x: point features (B, N, C_in).
            neighbours: long (B, N, k) indices of each point's neighbours (e.g. from :func:`knn_indices`).

        Returns:
            (B, N, C_out).
        """
        batch, num_points, _ = x.shape
        graph = NeighbourGraph(neighbours)
        a = self.centre(x).reshape(graph.num_nodes, -1)  # (B·N, C)
        b = self.neighbour(x).reshape(graph.num_nodes, -1)
        largest, smallest = self._extreme_neighbours(b.detach(), graph)
        if self.training:
            mean, var = self._edge_statistics(a, b, graph)
            with torch.no_grad():
                edges = graph.targets.numel()
                unbiased = var * edges / max(edges - 1, 1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)  # (C,)
        pick = torch.where(scale >= 0, largest, smallest)  # (B·N, C) point holding the surviving edge
        edge = a + b.gather(0, pick)  # the edge value that survives the max
        out = (edge - mean) * scale + self.bias
        return F.leaky_relu(out, self.negative_slope).view(batch, num_points, -1)

    @staticmethod
    def _extreme_neighbours(b: Tensor, graph: NeighbourGraph) -> tuple[Tensor, Tensor]:
        """Per point and channel, the neighbour with the largest and the smallest ``b``: long (B·N, C) each."""
        channels = b.shape[1]
        rows_per_block = max(1, KNN_BLOCK_ELEMENTS // (graph.k * channels))
        targets = graph.targets.view(graph.num_nodes, graph.k)
        largest, smallest = [], []
        for start in range(0, graph.num_nodes, rows_per_block):
            block = targets[start : start + rows_per_block]  # (r, k)
            values = b[block.reshape(-1)].view(*block.shape, channels)  # (r, k, C)
            # max/min with indices reduce the middle axis several times faster than argmax/argmin.
            largest.append(block.gather(1, values.max(dim=1).indices))
            smallest.append(block.gather(1, values.min(dim=1).indices))
        return torch.cat(largest), torch.cat(smallest)

    @staticmethod
    def _edge_statistics(a: Tensor, b: Tensor, graph: NeighbourGraph) -> tuple[Tensor, Tensor]:
        """Mean and (biased) variance per channel of ``a_i + b_j`` over all edges, float32 (C,) each."""
        a, b = a.float(), b.float()
        edges = graph.targets.numel()
        in_degree = graph.in_degree.to(b.dtype).unsqueeze(1)  # (B·N, 1): how often a point is a neighbour
        mean_a = a.mean(dim=0)
        mean_b = (in_degree * b).sum(dim=0) / edges  # b averaged over edges
        a_c, b_c = a - mean_a, b - mean_b  # centred, to keep the variance free of cancellation
        squares = (
            graph.k * a_c.square().sum(dim=0)
            + 2.0 * (a_c * graph.neighbour_sum(b_c)).sum(dim=0)
            + (in_degree * b_c.square()).sum(dim=0)
        )
        return mean_a + mean_b, (squares / edges).clamp_min(0.0)


class PointFeatureHead(nn.Module):
    """Symmetric pooling of per-point features and the linear layer shared by vectors and tokens.

    ``max`` pooling: vector ``fc(max_i f_i)``, token ``fc(f_i)``. ``max_mean`` pooling: vector
    ``fc([max_i f_i, mean_i f_i])``, token ``fc([max_i f_i, f_i])`` — each token carries the cloud's global
    feature beside its point's own, and the mean of the tokens over all points is exactly the vector.

    Args:
        channels: per-point feature size C.
        out_dim: output size.
        pooling: ``"max"`` or ``"max_mean"``.
    """

    def __init__(self, channels: int, out_dim: int, pooling: Pooling) -> None:
        super().__init__()
        if pooling not in ("max", "max_mean"):
            raise ValueError(f"pooling must be 'max' or 'max_mean', got {pooling!r}.")
        self.pooling = pooling
        self.fc = nn.Linear(channels * (2 if pooling == "max_mean" else 1), out_dim)

    def vector(self, features: Tensor) -> Tensor:
        """Per-point features (B, N, C) → (B, out_dim)."""
        pooled = features.amax(dim=1)
        if self.pooling == "max_mean":
            pooled = torch.cat([pooled, features.mean(dim=1)], dim=1)
        return self.fc(pooled)

    def tokens(self, features: Tensor, index: Tensor | None) -> Tensor:
        """Per-point features (B, N, C) → tokens (B, T, out_dim) of the points ``index`` (B, T) (None: all N)."""
        per_point = features if index is None else _gather_points(features, index)  # (B, T, C)
        if self.pooling == "max_mean":
            pooled = features.amax(dim=1, keepdim=True).expand(-1, per_point.shape[1], -1)
            per_point = torch.cat([pooled, per_point], dim=2)
        return self.fc(per_point)


def _token_index(points: Tensor, num_tokens: int | None) -> Tensor | None:
    """Indices (B, T) of the token points: farthest-point sampling on xyz, or None for every point."""
    if num_tokens is None:
        return None
    return farthest_point_indices(points[..., :3], min(num_tokens, points.shape[1]))


def _check_num_tokens(num_tokens: int | None) -> None:
    if num_tokens is not None and num_tokens < 1:
        raise ValueError(f"num_tokens must be positive or None (every point), got {num_tokens}.")


class InputTransform(nn.Module):
    """PointNet's T-Net: a small PointNet on xyz predicting a 3x3 matrix, initialised to the identity.

    Args:
        widths: channels of its shared per-point layers; its two linear layers use half the last width.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64)) -> None:
        super().__init__()
        self.points = shared_mlp(3, widths)
        hidden = max(widths[-1] // 2, 1)
        self.head = nn.Sequential(nn.Linear(widths[-1], hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 9))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, xyz: Tensor) -> Tensor:
        """Coordinates (B, 3, N) → transforms (B, 3, 3) (identity + a learned correction)."""
        offset = self.head(self.points(xyz).amax(dim=2)).view(-1, 3, 3)
        return offset + torch.eye(3, device=xyz.device, dtype=offset.dtype)


def shared_mlp(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Per-point MLP: one Conv1d (kernel 1) + BatchNorm1d + ReLU per width, (B, C_in, N) → (B, widths[-1], N)."""
    if not widths:
        raise ValueError("widths must name at least one layer.")
    layers: list[nn.Module] = []
    previous = in_channels
    for width in widths:
        layers += [nn.Conv1d(previous, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        previous = width
    return nn.Sequential(*layers)


def orthogonality_penalty(transform: Tensor) -> Tensor:
    """Mean over the batch of ``||T Tᵀ - I||_F²`` for transforms (B, D, D); a scalar, 0 for rotations."""
    eye = torch.eye(transform.shape[-1], device=transform.device, dtype=transform.dtype)
    return (transform @ transform.transpose(1, 2) - eye).square().sum(dim=(1, 2)).mean()


class _PointCloudEncoder(Encoder):
    """What PointNet and DGCNN share: per-point features → :class:`PointFeatureHead` (vector or tokens).

    Subclasses set ``head`` (a :class:`PointFeatureHead`) and ``num_tokens`` and implement
    :meth:`point_features`, float (B, N, in_channels) → per-point features (B, N, C).
    """

    modality = "depth"
    head: PointFeatureHead
    num_tokens: int | None

    def point_features(self, x: Tensor) -> Tensor:
        """Per-point features (B, N, C) of point clouds (B, N, in_channels)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Encode point clouds.

        Args:
            x: float (B, N, in_channels).

        Returns:
            Features, (B, out_dim).
        """
        return self.head.vector(self.point_features(x))

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Point clouds (B, N, in_channels) → tokens (B, T, out_dim), T = min(num_tokens, N) (or N).

        Tokens come in farthest-point-sampling order, so the sequence does not depend on the input order.
        """
        return self.head.tokens(self.point_features(x), _token_index(x, self.num_tokens))


class PointNetEncoder(_PointCloudEncoder):
    """PointNet (Qi et al., CVPR 2017) over face point clouds of xyz + normals.

    An optional T-Net predicts a 3x3 matrix per cloud applied to xyz and to the normals (exact for rotations;
    the matrix is pulled towards orthogonal by :attr:`transform_regularizer`); a shared per-point MLP
    (Conv1d k=1 + BN + ReLU) lifts each point to ``widths[-1]`` features; symmetric pooling and a linear
    layer give the vector (see :class:`PointFeatureHead`).

    Cost: O(N · Σ widths²) per cloud, memory O(B · N · Σ widths); no neighbour search.

    The T-Net regulariser: after each forward, :attr:`transform_regularizer` holds ``mean ||T Tᵀ − I||_F²`` over
    the clouds of that call (a scalar with gradient; None without a T-Net), and :meth:`auxiliary_loss` returns
    it, so :class:`~multimodal_fer.models.multimodal.MultimodalFERModel` collects it and
    :class:`~multimodal_fer.tasks.MultitaskFERTask` adds it to the training loss with ``auxiliary_loss_weight``
    (default 0.001, PointNet's weight).

    Args:
        out_dim: size of the output feature vector (and of each token).
        in_channels: channels per point (6: xyz then normals; the first three must be xyz).
        widths: channels of the shared per-point MLP.
        input_transform: learn the 3x3 input transform (T-Net).
        pooling: ``"max"`` or ``"max_mean"`` (max and mean concatenated).
        num_tokens: tokens for token fusions (MulT), taken at this many farthest-point-sampled points (fewer
            if the cloud is smaller); None: one token per point, in input order.

    Input: normalised point clouds, float (B, N, in_channels), any N >= 1.
    Output: (B, out_dim).
    """

    modality = "depth"

    def __init__(
        self,
        out_dim: int = 128,
        in_channels: int = 6,
        widths: tuple[int, ...] = (64, 128, 256),
        input_transform: bool = True,
        pooling: Pooling = "max",
        num_tokens: int | None = 64,
    ) -> None:
        super().__init__(out_dim)
        if in_channels < 3:
            raise ValueError(f"in_channels must be at least 3 (xyz first), got {in_channels}.")
        _check_num_tokens(num_tokens)
        self.in_channels = in_channels
        self.num_tokens = num_tokens
        self.transform = InputTransform() if input_transform else None
        self.points = shared_mlp(in_channels, tuple(widths))
        self.head = PointFeatureHead(widths[-1], out_dim, pooling)
        self.transform_regularizer: Tensor | None = None

    def auxiliary_loss(self) -> Tensor | None:
        """The T-Net's orthogonality regulariser ``mean ||T Tᵀ − I||_F²`` of the latest forward (None: no T-Net)."""
        return self.transform_regularizer

    def point_features(self, x: Tensor) -> Tensor:
        """Point clouds (B, N, in_channels) → per-point features (B, N, widths[-1]); sets the regulariser."""
        check_cloud(x, self.in_channels, type(self).__name__)
        if self.transform is not None:
            matrix = self.transform(x[..., :3].transpose(1, 2))  # (B, 3, 3)
            self.transform_regularizer = orthogonality_penalty(matrix)
            # Rows are points: p' = p T. Normals (channels 3:6) take the same matrix (exact for rotations).
            parts = [x[..., :3] @ matrix]
            if self.in_channels >= 6:
                parts.append(x[..., 3:6] @ matrix)
            x = torch.cat([*parts, x[..., 3 * len(parts) :]], dim=-1)
        return self.points(x.transpose(1, 2)).transpose(1, 2)


class DGCNNEncoder(_PointCloudEncoder):
    """Dynamic graph CNN (Wang et al., ACM TOG 2019) over face point clouds of xyz + normals.

    Each :class:`EdgeConv` layer works on a k-nearest-neighbour graph: the first on xyz (spatial
    neighbours), every later one on the previous layer's features (the graph is recomputed in feature
    space). The layers' outputs are concatenated, lifted to ``embed_dim`` per point (Conv1d k=1 + BN +
    LeakyReLU), pooled (global max + mean by default) and mapped to ``out_dim`` (see :class:`PointFeatureHead`).

    Cost per cloud: the kNN searches, O(N² · C) time each (distance blocks of 64 MiB, no gradient), and the
    layers, O(N · k · C) time but O(N · C) memory kept for backward (:class:`EdgeConv`). With
    ties in distances (duplicated points) the neighbour sets may differ between orderings of the input, but
    the duplicates carry equal features, so the output does not.

    Args:
        out_dim: size of the output feature vector (and of each token).
        in_channels: channels per point (6: xyz then normals; the first three must be xyz).
        widths: output channels of the EdgeConv layers.
        k: neighbours per point (clipped to N for small clouds; each point counts as its own neighbour).
        embed_dim: per-point size before pooling.
        pooling: ``"max_mean"`` (max and mean concatenated) or ``"max"``.
        negative_slope: slope of the LeakyReLUs.
        num_tokens: tokens for token fusions (MulT), taken at this many farthest-point-sampled points (fewer
            if the cloud is smaller); None: one token per point, in input order.

    Input: normalised point clouds, float (B, N, in_channels), any N >= 1.
    Output: (B, out_dim).
    """

    modality = "depth"

    def __init__(
        self,
        out_dim: int = 128,
        in_channels: int = 6,
        widths: tuple[int, ...] = (64, 64, 128),
        k: int = 16,
        embed_dim: int = 512,
        pooling: Pooling = "max_mean",
        negative_slope: float = 0.2,
        num_tokens: int | None = 64,
    ) -> None:
        super().__init__(out_dim)
        if in_channels < 3:
            raise ValueError(f"in_channels must be at least 3 (xyz first), got {in_channels}.")
        if not widths:
            raise ValueError("widths must name at least one EdgeConv layer.")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}.")
        _check_num_tokens(num_tokens)
        self.in_channels = in_channels
        self.k = k
        self.num_tokens = num_tokens
        channels = (in_channels, *widths)
        self.edge_convs = nn.ModuleList(
            EdgeConv(c_in, c_out, negative_slope) for c_in, c_out in zip(channels[:-1], widths, strict=True)
        )
        self.embed = nn.Sequential(
            nn.Conv1d(sum(widths), embed_dim, 1, bias=False),
            nn.BatchNorm1d(embed_dim),
            nn.LeakyReLU(negative_slope, inplace=True),
        )
        self.head = PointFeatureHead(embed_dim, out_dim, pooling)

    def point_features(self, x: Tensor) -> Tensor:
        """Point clouds (B, N, in_channels) → per-point embeddings (B, N, embed_dim)."""
        check_cloud(x, self.in_channels, type(self).__name__)
        features, graph = x, x[..., :3]  # the first graph joins spatial neighbours
        outputs = []
        for layer in self.edge_convs:
            features = layer(features, knn_indices(graph, self.k))  # (B, N, width)
            outputs.append(features)
            graph = features
        return self.embed(torch.cat(outputs, dim=-1).transpose(1, 2)).transpose(1, 2)
