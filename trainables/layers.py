"""The paper's layers: Sharpened Cosine Similarity, SharpenedSDP and MaxAbsPool2d.

SCS follows the latest reference layer (brohrer/sharpened-cosine-similarity, 2022-05-20; see
docs/scs_reference.md §1-2):

    N(s) = sqrt(sum(s^2) + eps) + q          eps inside the sqrt, q = exp(log_q) outside
    c    = (w . s) / (||w|| * N(s))           ||w|| has no eps
    y    = sign(c) * (|c| + eps) ** p         one p per output channel, clamped >= p_min

SharpenedSDP drops both normalisations: y = sign(w . s) * (|w . s| + eps) ** p.
With a fixed p the exponent is a buffer, not a parameter (p = 1 gives plain cosine similarity).

The sharpening runs in float32 even under bf16/fp16 autocast: (|c| + eps) ** p with eps = 1e-6 and p
near 0.1 has derivatives of order 1e5 that half precision cannot hold. By default it runs as the fused
Function of fused.py; `fused=False` keeps plain autograd through `sharpen()` (the bench's baseline).

Called as layer(x, pool=pool) (a Rohrer stage's pooling right after the layer), SCS and SDP return the
pooled output, as one kernel each way where windowed.py runs that pooling (same values).

The reference clamps weight and p in place at the start of every forward. Under torch.compile that
in-place write to parameters would be traced into the graph (and keeps CUDA graphs from being used), so
a compiled forward skips it and the caller projects after each optimizer step instead: the Trainer calls
`constrain_model_()`, which gives the same parameters at every forward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import windowed
from .fused import sharpened_ratio

__all__ = ["SharpCosSim2d", "SharpenedSDP2d", "MaxAbsPool2d", "sharpen", "constrain_model_"]


def sharpen(c: torch.Tensor, p: torch.Tensor, eps: float) -> torch.Tensor:
    """sign(c) * (|c| + eps) ** p, computed in float32; sign(0) = 0 keeps the output and dy/dp at 0."""
    c = c.float()
    return torch.sign(c) * (c.abs() + eps).pow(p.float())


class _SharpenedBase(nn.Module):
    """Weight, per-kernel p (learned or fixed) and the in-place clamps the reference applies."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, groups: int = 1, p_value: float | None = None,
                 p_min: float = 0.1, w_max: float = 1.0, eps: float = 1e-6, fused: bool = True):
        super().__init__()
        if groups not in (1, in_channels):
            raise ValueError(f"groups must be 1 or in_channels ({in_channels}), got {groups}")
        if out_channels % groups:
            raise ValueError(f"out_channels {out_channels} is not a multiple of groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = kernel_size, stride, padding, groups
        self.p_min, self.w_max, self.eps, self.fused = p_min, w_max, eps, fused
        self.compiled_kernels: bool | None = None  # the fused bodies compiled (None: on CUDA only; Trainer sets)
        shape = (out_channels, in_channels // groups, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-w_max, w_max))
        if p_value is None:  # learned: one exponent per kernel, U(1, 3) as in the reference
            self.p = nn.Parameter(torch.empty(1, out_channels, 1, 1).uniform_(1.0, 3.0))
        else:
            if p_value < p_min:
                raise ValueError(f"fixed p {p_value} is below p_min {p_min}")
            self.register_buffer("p", torch.full((1, out_channels, 1, 1), float(p_value)))
        self.p_fixed = p_value is not None

    @torch.no_grad()
    def constrain_(self) -> None:
        """The reference's projections: weight into [-w_max, w_max], p to >= p_min (in place)."""
        self.weight.clamp_(-self.w_max, self.w_max)
        if not self.p_fixed:
            self.p.clamp_(min=self.p_min)

    def _constrain_unless_compiled(self) -> None:
        if not torch.compiler.is_compiling():
            self.constrain_()

    def _sharpen(self, dot: torch.Tensor, norm: torch.Tensor | None) -> torch.Tensor:
        if self.fused:
            return sharpened_ratio(dot, norm, self.p, self.eps, self.compiled_kernels)
        return sharpen(dot.float() if norm is None else dot.float() / norm, self.p, self.eps)

    def _dot(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, 1, self.groups)

    def dot_and_norm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution with the (normalised) weight and the patch norm it is divided by (None: SDP)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, pool: nn.Module | None = None) -> torch.Tensor:
        """The layer's output; with `pool`, pool(output), as one windowed kernel each way where the pooling
        runs windowed (windowed.py: the pooling picks its winners before the sharpening, same values)."""
        dot, norm = self.dot_and_norm(x)
        if pool is None:
            return self._sharpen(dot, norm)
        if self.fused and windowed.runs_windowed(pool, dot, self.compiled_kernels):
            return windowed.sharpened_pool(dot, norm, self.p, self.eps, pool)
        return pool(self._sharpen(dot, norm))

    def extra_repr(self) -> str:
        p = f"p={self.p.flatten()[0].item():g} (fixed)" if self.p_fixed else "p learned"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, {p}")


class SharpCosSim2d(_SharpenedBase):
    """Sharpened cosine similarity over every sliding patch, like a bias-free Conv2d."""

    def __init__(self, *args, q_init: float = 1e-3, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_q = nn.Parameter(torch.full((1, 1, 1, 1), math.log(q_init)))

    def patch_norm(self, x: torch.Tensor) -> torch.Tensor:
        """N(s) per output position: (B, 1 or groups, H', W'), float32.

        sum(s^2) over a k x k window is avg_pool * k^2 (zero padding adds 0, count_include_pad keeps
        the divisor at k^2); for groups=1 the channels are summed first, so one map serves every kernel.
        """
        sq = x.float().square()
        if self.groups == 1:
            sq = sq.sum(dim=1, keepdim=True)
        k = self.kernel_size
        window_sum = F.avg_pool2d(sq, k, self.stride, self.padding, count_include_pad=True) * (k * k)
        return torch.sqrt(window_sum + self.eps) + self.log_q.float().exp()

    def dot_and_norm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._constrain_unless_compiled()
        w = self.weight / torch.linalg.vector_norm(self.weight, dim=(1, 2, 3), keepdim=True)
        dot = self._dot(x, w)
        norm = self.patch_norm(x)
        if self.groups > 1 and self.out_channels != self.groups:  # channel multiplier: group o // m
            norm = norm.repeat_interleave(self.out_channels // self.groups, dim=1)
        return dot, norm


class SharpenedSDP2d(_SharpenedBase):
    """Sharpened strided dot product: a convolution raised to a learned p, with no normalisation."""

    def dot_and_norm(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self._constrain_unless_compiled()
        return self._dot(x, self.weight), None


@torch.no_grad()
def constrain_model_(model: nn.Module) -> None:
    """Project every SCS/SDP layer's weight and learned p back into range (after each optimizer step).

    Grouped into a few multi-tensor kernels: on a GPU one small clamp per layer per step would cost
    more launches than some of the small nets' whole steps.
    """
    weights: dict[float, list] = {}
    exponents: dict[float, list] = {}
    for m in model.modules():
        if isinstance(m, _SharpenedBase):
            weights.setdefault(m.w_max, []).append(m.weight)
            if not m.p_fixed:
                exponents.setdefault(m.p_min, []).append(m.p)
    for w_max, tensors in weights.items():
        torch._foreach_clamp_min_(tensors, -w_max)
        torch._foreach_clamp_max_(tensors, w_max)
    for p_min, tensors in exponents.items():
        torch._foreach_clamp_min_(tensors, p_min)


class _MaxAbsPool(torch.autograd.Function):
    """Max-pooling of |x| keeping the sign, with one pooling backward.

    The largest and the most negative value of each window come from two pooling passes (on the CPU in
    channels_last each costs about what a copy does); the larger in size wins, and a tie (+a and -a both
    largest) goes to +a. Backward routes the gradient to the winner's position with one
    `max_pool2d_with_indices_backward`, where autograd through two pools, a negation and a `where` ran
    both pools' backward and summed them. The selection avoids `torch.where`, which ATen runs about
    four times slower on the CPU than `lerp` (exact for weights 0 and 1: it returns an end point) and
    integer arithmetic; the winners' indices are put together only in backward, so evaluation skips it.
    """

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode):
        window = [_pair(kernel_size), _pair(stride), _pair(padding), [1, 1]]  # ... and dilation 1
        largest, at_largest = torch.ops.aten.max_pool2d_with_indices(x, *window, ceil_mode)
        smallest, at_smallest = torch.ops.aten.max_pool2d_with_indices(-x, *window, ceil_mode)
        negative = largest < smallest  # -smallest is the most negative value; a tie goes to the positive one
        ctx.save_for_backward(x, at_largest, at_smallest, negative)
        ctx.window, ctx.ceil_mode = window, ceil_mode
        if x.is_cuda or x.dtype != torch.float32:
            # where on a GPU (as fast as lerp there), and for half precision, where lerp's end - start
            # could overflow to inf and make 0 * inf a NaN
            return torch.where(negative, smallest.neg_(), largest)
        return torch.lerp(largest, smallest.neg_(), negative.to(largest.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, at_largest, at_smallest, negative = ctx.saved_tensors
        winner = (at_smallest - at_largest).mul_(negative).add_(at_largest)
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *ctx.window, ctx.ceil_mode, winner)
        return grad_x, None, None, None, None


def _pair(v) -> list:
    return [v, v] if isinstance(v, int) else list(v)


class MaxAbsPool2d(nn.Module):
    """Max-pooling of |x| that keeps the sign of the chosen element; a tie (+a, -a) picks +a."""

    absolute = True  # what windowed.py pools by (nn.MaxPool2d: by value)

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride or kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.compiled_kernels: bool | None = None  # the Trainer sets it: run windowed where possible

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if windowed.runs_windowed(self, x, self.compiled_kernels):
            return windowed.window_pool(self, x)
        return _MaxAbsPool.apply(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")
