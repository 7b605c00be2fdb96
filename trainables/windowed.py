"""Max- and MaxAbs-pooling over non-overlapping windows, alone or fused with the SCS/SDP sharpening before
it, as compiled kernels for the CPU.

Why: eagerly, MaxAbsPool2d is two ATen poolings plus a negation and a selection over the largest tensors
of the net, and every Rohrer stage writes its full-size sharpened output only for the pooling to keep a
quarter of it. Measured on one thread, Rohrer100K's three stages at batch 128 (forward and backward,
channels_last): eager MaxAbsPool2d 22.5 ms a step, here 3.6-5.1 ms; SCS followed by its pooling 23 ms
(max) and 38 ms (maxabs) with the sharpening compiled on its own, 7.5 ms fused here. A plain
nn.MaxPool2d after a Conv2d stays ATen's (the Trainer does not mark it): windowed, its micro-benchmark
was faster (9.5 ms against 3.6-5.1 ms) but a whole Conv2d + MaxPool2d training step was not.

Two facts make this exact:
- Windows that do not overlap (stride = kernel, no padding, as in every Rohrer net) let one kernel read
  each input once and write the pooled value and the winner's position in its window, and let backward
  write each input position once (the gradient, or 0) with no zero-fill and scatter.
- Max-pooling commutes with a per-channel increasing function, and MaxAbs-pooling with one that is also
  odd: sharpen(c) = sign(c) (|c| + eps)^p with p > 0 is both. So a stage "SCS/SDP -> pool" picks each
  window's winner by c = dot / norm and sharpens only the winners: the same winners and values (but see
  rounding below), and a quarter of the exp/log work each way.

The selection reproduces ATen's: windows are read in row-major order and a later element wins only when
strictly larger (the first maximum is kept) or NaN (a NaN anywhere in a window passes through, so a
diverging trial still stops); MaxAbs compares |v| and a tie (+a, -a) goes to +a, as in
layers.MaxAbsPool2d. With ceil_mode the last window's missing rows and columns repeat the input's last
real row and column, which the window has already read and so can never win (a copy is not strictly
larger): no padding value is needed.

Fused with the sharpening, the winners are picked by c where ATen picks them by y = sharpen(c). The two
orders agree except where float32 rounding gives two different c the same y (or, pow not being correctly
rounded, swaps them): then the gradient goes to another position of the window, or, for MaxAbs, a
near-tie of +a and -b flips the pooled sign. Rare, and harmless to training, but not bit for bit. The winner's
position is a float: a uint8 made the compiled selection about 3x slower (its masks convert element by element).

The kernels work on (B, H, W, C) views of channels_last tensors, so they are vectorized over channels,
and compile once per process and layer shape, for every batch size above 1 (symbolic in the batch only:
a kernel symbolic in every size ran 2-4x slower; a batch of 1 gets a kernel of its own), through
kernels.run_kernel: a compiler failure is recorded and that kernel's modules go back to ATen's pooling. CPU only: on a
GPU the Trainer compiles the whole model, where inductor fuses these operations itself.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .kernels import kernel_failed, run_kernel, sharpen_backward, sharpen_forward, sum_to

__all__ = ["window_of", "runs_windowed", "window_pool", "sharpened_pool"]


def window_of(pool) -> tuple[int, bool, bool] | None:
    """(kernel, ceil_mode, absolute) of a pooling module that can run windowed, else None: a square window
    of kernel = stride, no padding or dilation, no indices returned."""
    if not hasattr(pool, "ceil_mode"):  # not a pooling (nn.Identity where a stage has none)
        return None
    k = _square(pool.kernel_size)
    stride = k if pool.stride is None else _square(pool.stride)
    if k is None or stride != k or _square(pool.padding) != 0 or _square(getattr(pool, "dilation", 1)) != 1:
        return None
    if getattr(pool, "return_indices", False):
        return None
    return k, bool(pool.ceil_mode), bool(getattr(pool, "absolute", False))


def _square(v) -> int | None:
    """v as one int when it is one (or the same int twice), else None."""
    if isinstance(v, int):
        return v
    return v[0] if len(v) == 2 and v[0] == v[1] else None


def _name(kind: str, window: tuple[int, bool, bool]) -> str:
    k, ceil_mode, absolute = window
    return f"{kind} {'maxabs' if absolute else 'max'} k{k} {'ceil' if ceil_mode else 'floor'}"


def runs_windowed(pool, x: torch.Tensor, compiled: bool | None) -> bool:
    """Whether `pool` runs windowed on x; compiled: the calling module's compiled_kernels (the Trainer
    sets it for trials long enough to pay for compiling)."""
    if not compiled or torch.compiler.is_compiling():
        return False
    window = window_of(pool)
    return (window is not None and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and min(x.shape[-2:]) >= window[0] and x.is_contiguous(memory_format=torch.channels_last)
            and not kernel_failed(_name("pool", window), "cpu")
            and not kernel_failed(_name("sharpened pool", window), "cpu"))


# -- the kernels' math (traced by torch.compile; plain torch ops, so it also runs eagerly) ---------------
def _window_elements(x: torch.Tensor, k: int, ceil_mode: bool) -> list[torch.Tensor]:
    """The k*k elements of every window of x (B, H, W, C), row-major, each (B, H', W', C)."""
    _, h, w, _ = x.shape
    out_h, out_w = (-(-h // k), -(-w // k)) if ceil_mode else (h // k, w // k)
    rows = [torch.clamp(torch.arange(out_h, device=x.device) * k + i, max=h - 1) for i in range(k)]
    cols = [torch.clamp(torch.arange(out_w, device=x.device) * k + j, max=w - 1) for j in range(k)]
    return [x[:, r[:, None], c[None, :], :] for r in rows for c in cols]


def _select(values: list[torch.Tensor], absolute: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's winner and its position (0 .. k*k - 1, as float)."""
    best, at = values[0], torch.zeros_like(values[0])
    for e, v in enumerate(values[1:], 1):
        if absolute:
            size, best_size = v.abs(), best.abs()
            better = (size > best_size) | ((size == best_size) & (v > 0) & ~(best > 0)) | v.isnan()
        else:
            better = (v > best) | v.isnan()
        best, at = torch.where(better, v, best), torch.where(better, float(e), at)
    return best, at


def _scatter(values: torch.Tensor, at: torch.Tensor, k: int, h: int, w: int) -> torch.Tensor:
    """(B, H', W', C) values put at their window positions of a (B, h, w, C) tensor, 0 elsewhere."""
    b, out_h, out_w, c = values.shape
    steps = torch.arange(k, device=values.device, dtype=at.dtype)
    position = (steps.view(1, 1, k, 1, 1, 1) * k + steps.view(1, 1, 1, 1, k, 1))
    spread = torch.where(at[:, :, None, :, None, :] == position, values[:, :, None, :, None, :], 0.0)
    spread = spread.reshape(b, out_h * k, out_w * k, c)[:, :h, :w, :]  # ceil_mode's extra rows cut off
    if out_h * k < h or out_w * k < w:  # floor mode's leftover rows and columns get 0
        spread = F.pad(spread, (0, 0, 0, w - out_w * k, 0, h - out_h * k))
    return spread.contiguous()


def _pool_forward(x, k: int, ceil_mode: bool, absolute: bool):
    return _select(_window_elements(x, k, ceil_mode), absolute)


def _pool_backward(grad, at, h, w, k: int):
    return _scatter(grad, at, k, h, w)


def _sharpened_pool_forward(dot, norm, p, eps: float, k: int, ceil_mode: bool, absolute: bool):
    """y = sharpen(pool(c)) with c = dot / norm (c = dot without norm); also the pooled c and positions."""
    c = _window_elements(dot, k, ceil_mode)
    if norm is not None:
        c = [v / n for v, n in zip(c, _window_elements(norm, k, ceil_mode))]
    c, at = _select(c, absolute)
    return sharpen_forward(c, None, p, eps), c, at


def _sharpened_pool_backward(grad, c, y, at, norm, p, h, w, eps: float, k: int, need_norm: bool,
                             need_p: bool):
    """Gradients of dot (and norm, p): the sharpening's at the winners, spread to their positions;
    dc/d(dot) = 1 / norm and dc/d(norm) = -c / norm as in fused.py."""
    grad_c, _, grad_p = sharpen_backward(grad, c, None, p, y, eps, False, need_p)
    grad_dot = _scatter(grad_c, at, k, h, w)
    grad_norm = None
    if norm is not None:
        if need_norm:
            grad_norm = -sum_to(_scatter(grad_c * c, at, k, h, w), norm.shape) / norm
        grad_dot = grad_dot / norm
    return grad_dot, grad_norm, grad_p


# -- autograd Functions on (B, C, H, W) channels_last tensors ---------------------------------------------
def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


class _WindowPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, window):
        k, ceil_mode, absolute = window
        name = _name("pool", window)  # one kernel per name: the name holds every constant bound into it
        fn = functools.partial(_pool_forward, k=k, ceil_mode=ceil_mode, absolute=absolute)
        out, at = run_kernel(name, fn, True, x, _nhwc(x), shapes="batch")
        ctx.save_for_backward(at)
        ctx.name, ctx.k, ctx.size = name, k, tuple(x.shape[-2:])
        return _nchw(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        at, = ctx.saved_tensors
        fn = functools.partial(_pool_backward, k=ctx.k)
        grad_x = run_kernel(ctx.name + " backward", fn, True, grad, _nhwc(grad), at, *ctx.size, shapes="batch")
        return _nchw(grad_x), None


class _SharpenedPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dot, norm, p, eps, window):
        k, ceil_mode, absolute = window
        name = _name("sharpened pool", window) + f" eps{eps:g}{'' if norm is None else ' norm'}"
        fn = functools.partial(_sharpened_pool_forward, eps=eps, k=k, ceil_mode=ceil_mode, absolute=absolute)
        y, c, at = run_kernel(name, fn, True, dot, _nhwc(dot), None if norm is None else _nhwc(norm),
                        _nhwc(p.detach()), shapes="batch")
        ctx.save_for_backward(c, y, at, norm, p)
        ctx.name, ctx.eps, ctx.k, ctx.size = name, eps, k, tuple(dot.shape[-2:])
        return _nchw(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        c, y, at, norm, p = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_norm, need_p = bool(need[1]), bool(need[2])
        fn = functools.partial(_sharpened_pool_backward, eps=ctx.eps, k=ctx.k, need_norm=need_norm,
                               need_p=need_p)
        name = f"{ctx.name} backward{' dnorm' if need_norm else ''}{' dp' if need_p else ''}"
        grad_dot, grad_norm, grad_p = run_kernel(
            name, fn, True, grad, _nhwc(grad), c, y, at,
            None if norm is None else _nhwc(norm), _nhwc(p.detach()), *ctx.size, shapes="batch")
        return (_nchw(grad_dot), None if grad_norm is None else _nchw(grad_norm),
                None if grad_p is None else _nchw(grad_p), None, None)


def window_pool(pool, x: torch.Tensor) -> torch.Tensor:
    """pool(x) through the windowed kernel (check runs_windowed first)."""
    return _WindowPool.apply(x, window_of(pool))


def sharpened_pool(dot: torch.Tensor, norm: torch.Tensor | None, p: torch.Tensor, eps: float,
                   pool) -> torch.Tensor:
    """pool(sharpened_ratio(dot, norm, p, eps)) in one kernel each way (check runs_windowed first)."""
    return _SharpenedPool.apply(dot, norm, p, eps, window_of(pool))
