"""The elementwise tail of SCS and SharpenedSDP as one autograd Function with a hand-written backward.

Autograd through `sign(c) * (|c| + eps) ** p` with `c = dot / norm` keeps about six float32 tensors of the
layer's output size alive until backward and runs a dozen elementwise kernels each way; on a GPU that
memory traffic, not the convolution, is what made SCS several times slower than Conv2d. This Function
keeps `dot` (in the dtype the convolution produced: bf16 under autocast), `norm` (one channel for
groups=1) and its own output `y` (which the next layer keeps anyway), recomputes `c` in backward and
writes every gradient in one pass:

    a = |c| + eps,   y = sign(c) * a^p
    dy/dc = p * a^p / a = p * |y| / a    (0 where c == 0, as autograd of sign(c) * a^p gives: y is 0 there)
    dy/dp = y * log(a)
    dc/d(dot) = 1 / norm,    dc/d(norm) = -c / norm

Because `y` is saved, modifying the output in place (an in-place ReLU right after the layer) makes
autograd refuse the backward; the models here use out-of-place activations.

Each body can run as one torch.compile'd kernel plus its reductions (Triton on CUDA, vectorized C++ on
the CPU), or eagerly; `compiled=None` compiles on CUDA only, and the Trainer asks for compiled kernels on
the CPU when a trial is long enough to pay for compiling them (train.py). In channels_last on the CPU
the eager bodies run their broadcasts slowly (about 150 ms per Rohrer100K first-layer step) and the
compiled ones take about 12 ms. Inside a whole-model torch.compile the Function is traced and fused with
its neighbours instead. The math runs in float32 for the reason given in layers.py.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .kernels import run_kernel, sharpen_backward, sharpen_forward

__all__ = ["sharpened_ratio"]


class _SharpenedRatio(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dot, norm, p, eps, compiled):
        ctx.eps, ctx.compiled = eps, compiled
        # p is a Parameter: dynamo would specialise on its shape (one kernel per layer width); as a plain
        # tensor one symbolic-shape kernel serves every layer
        y = run_kernel("forward", sharpen_forward, compiled, dot, dot, norm, p.detach(), eps)
        ctx.save_for_backward(dot, norm, p, y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        dot, norm, p, y = ctx.saved_tensors
        p = p.detach()
        need = ctx.needs_input_grad
        grad_dot, grad_norm, grad_p = run_kernel("backward", sharpen_backward, ctx.compiled, dot,
                                           grad, dot, norm, p, y, ctx.eps, bool(need[1]), bool(need[2]))
        return grad_dot, grad_norm, grad_p, None, None


def sharpened_ratio(dot: torch.Tensor, norm: torch.Tensor | None, p: torch.Tensor,
                    eps: float, compiled: bool | None = None) -> torch.Tensor:
    """sign(c) * (|c| + eps) ** p with c = dot / norm (c = dot when norm is None), in float32.

    dot: (B, O, H, W) in any float dtype; norm: float32, broadcastable to dot (e.g. (B, 1, H, W));
    p: (1, O, 1, 1). Gradients flow to all three. compiled: run both bodies as compiled kernels (None:
    on CUDA only).
    """
    return _SharpenedRatio.apply(dot, norm, p, eps, dot.is_cuda if compiled is None else compiled)
