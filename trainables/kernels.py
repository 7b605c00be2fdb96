"""Kernels that run compiled where it pays and eagerly otherwise, and the sharpening math they share.

`run_kernel(name, fn, compiled, ...)` runs fn as one torch.compile'd kernel per process, name and device type
(Triton on CUDA, vectorized C++ on the CPU), or eagerly: when not asked, inside an outer torch.compile
(which traces and fuses the math with its neighbours), and after a compiler failure, which is recorded
(`compile_failures`) so that a trial's rows can say why it ran eagerly. `sharpen_forward` and
`sharpen_backward` are the math of y = sign(c) * (|c| + eps) ** p, c = dot / norm, and its gradients,
written once for the fused sharpening (fused.py) and the sharpening fused with pooling (windowed.py).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

__all__ = ["run_kernel", "sharpen_forward", "sharpen_backward", "sum_to", "compile_failures", "kernel_failed",
           "allow_many_kernels"]


def _f32(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64, so gradcheck can check the hand-written backward)."""
    return t if t.dtype == torch.float64 else t.float()


def _power(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """a ** p; traced as exp(p * log a), which inductor's CPU code vectorizes (its pow it does not: twice
    the time); eagerly the one pow kernel, bit for bit what plain autograd computes."""
    return torch.exp(p * torch.log(a)) if torch.compiler.is_compiling() else a.pow(p)


def sharpen_forward(dot: torch.Tensor, norm: torch.Tensor | None, p: torch.Tensor, eps: float):
    c = _f32(dot) if norm is None else _f32(dot) / norm
    return torch.sign(c) * _power(c.abs() + eps, _f32(p))


def sharpen_backward(grad: torch.Tensor, dot: torch.Tensor, norm: torch.Tensor | None, p: torch.Tensor,
                   y: torch.Tensor, eps: float, need_norm: bool, need_p: bool):
    c = _f32(dot) if norm is None else _f32(dot) / norm
    a = c.abs() + eps
    grad = _f32(grad)
    grad_c = grad * _f32(p) * y.abs() / a
    grad_dot = grad_c if norm is None else grad_c / norm
    grad_norm = grad_p = None
    if need_norm and norm is not None:
        grad_norm = sum_to(-grad_dot * c, norm.shape)
    if need_p:
        grad_p = sum_to(grad * y * torch.log(a), p.shape)
    return grad_dot.to(dot.dtype), grad_norm, grad_p


def sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of the input it was broadcast from."""
    dims = [d for d, (n, m) in enumerate(zip(t.shape, shape)) if m == 1 and n != 1]
    return t.sum(dims, keepdim=True) if dims else t


_compiled: dict[str, object] = {}  # "name/device" -> compiled fn, or None once compiling it has failed
_failures: dict[str, str] = {}    # "name/device" -> why compiling it failed (a trial's rows report it)


def compile_failures(device_type: str = "") -> list[str]:
    """One line per compiled kernel (fused.py's, windowed.py's) whose compiling failed in this process (on
    one device type), saying why; its callers stay on their eager path for the rest of the process."""
    return [f"compiled kernel {key}: {why}" for key, why in sorted(_failures.items())
            if not device_type or key.endswith("/" + device_type)]


def kernel_failed(name: str, device_type: str) -> bool:
    """Whether compiling a kernel whose name starts with `name` failed on this device type (in this
    process): its callers then take their ATen path."""
    return any(key.startswith(name) and key.endswith("/" + device_type) for key in _failures)


def allow_many_kernels() -> None:
    """Raise dynamo's recompile limits for this thread; call it before every compiled call.

    One compiled function serves many layers, widths, batch sizes and window constants (each a dynamo
    cache entry of the same code), and dynamo's default limit of 8 silently runs the rest uncompiled.
    Dynamo's config is per thread, and Tune runs each trial in a thread of its own: a limit raised once
    by the first trial of a reused worker did not hold for the next (measured: a later trial's kernels
    ran uncompiled, 40 % slower)."""
    import torch._dynamo
    config = torch._dynamo.config
    if config.cache_size_limit < 256:
        config.cache_size_limit = 256
        config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 1024)


def run_kernel(name: str, fn, compiled: bool, t: torch.Tensor, *args, shapes: str = "symbolic"):
    """fn(*args), as one compiled kernel per process and device type when `compiled`; eagerly otherwise,
    inside an outer torch.compile (which fuses it with its neighbours), and after a compiler failure
    (the same math). shapes="symbolic": on the CPU one kernel for every shape (on CUDA one per shape);
    "batch": one kernel per shape with the batch size (dim 0 of every argument) symbolic."""
    key = f"{name}/{t.device.type}"
    if compiled and not torch.compiler.is_compiling() and _compiled.get(key, fn) is not None:
        try:
            allow_many_kernels()
            if key not in _compiled:
                # CPU: one kernel symbolic in every size; CUDA: specialised per shape (Triton's static
                # kernels are the fast ones, and dynamic=None would turn symbolic at the second shape)
                dynamic = t.device.type == "cpu" if shapes == "symbolic" else False
                _compiled[key] = torch.compile(fn, dynamic=dynamic)
            # detached: dynamo guards on requires_grad, which would compile the forward again for evaluation
            args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
            if shapes == "batch":
                for a in args:
                    if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] > 1:
                        torch._dynamo.maybe_mark_dynamic(a, 0)
            return _compiled[key](*args)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a compiler problem must not stop a trial
            log.warning("compiling the kernel %s failed (%s: %s); this call runs its math eagerly, later "
                        "ones the modules' eager path", name, type(exc).__name__, exc)
            _compiled[key] = None
            _failures[key] = f"{type(exc).__name__}: {exc}"[:300]
    return fn(*args)
