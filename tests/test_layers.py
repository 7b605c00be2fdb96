"""SCS, SharpenedSDP and MaxAbsPool2d against their formulas, and their numerical safety."""
import pytest
import torch
import torch.nn.functional as F

from trainables.layers import MaxAbsPool2d, SharpCosSim2d, SharpenedSDP2d

torch.manual_seed(0)


def scs_by_unfold(layer: SharpCosSim2d, x: torch.Tensor) -> torch.Tensor:
    """The reference formula with an explicit unfold, in float64, one group at a time."""
    x, w = x.double(), layer.weight.detach().double().clamp(-1, 1)
    p = layer.p.detach().double().clamp(min=0.1).view(-1)
    q, eps, k, g = layer.log_q.detach().double().exp().item(), layer.eps, layer.kernel_size, layer.groups
    b, cin, h, wd = x.shape
    cout, per_group = layer.out_channels, layer.out_channels // g
    cols = F.unfold(x, k, padding=layer.padding, stride=layer.stride)         # (B, cin*k*k, L)
    cols = cols.view(b, g, cin // g * k * k, -1)
    out = []
    for o in range(cout):
        s = cols[:, o // per_group]                                           # (B, cin/g*k*k, L)
        wo = w[o].reshape(-1)
        dot = (wo[None, :, None] * s).sum(1)
        norm = torch.sqrt((s * s).sum(1) + eps) + q
        c = dot / (wo.norm() * norm)
        out.append(torch.sign(c) * (c.abs() + eps) ** p[o])
    ho = (h + 2 * layer.padding - k) // layer.stride + 1
    return torch.stack(out, 1).view(b, cout, ho, -1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("cin,cout,groups", [(3, 5, 1), (4, 4, 4), (4, 8, 4)])
def test_scs_matches_unfold_formula(stride, padding, cin, cout, groups):
    layer = SharpCosSim2d(cin, cout, 3, stride, padding, groups)
    x = torch.randn(2, cin, 9, 9)
    got = layer(x).double()
    want = scs_by_unfold(layer, x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5


def test_fixed_p_is_a_buffer_and_p1_is_cosine_similarity():
    layer = SharpCosSim2d(3, 4, 3, p_value=1.0)
    assert "p" not in dict(layer.named_parameters()) and "p" in dict(layer.named_buffers())
    x = torch.randn(1, 3, 5, 5)
    cols = F.unfold(x, 3)[0]                                                  # (27, 9)
    w = layer.weight.detach().reshape(4, -1)
    q = layer.log_q.exp().item()
    cos = (w @ cols) / (w.norm(dim=1, keepdim=True) * (torch.sqrt((cols ** 2).sum(0) + 1e-6) + q))
    want = torch.sign(cos) * (cos.abs() + 1e-6)
    assert torch.allclose(layer(x)[0].reshape(4, -1), want, atol=1e-5)


def test_sdp_is_unnormalised_sharpened_convolution():
    layer = SharpenedSDP2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    dot = F.conv2d(x, layer.weight.detach().clamp(-1, 1), padding=1)
    want = torch.sign(dot) * (dot.abs() + 1e-6) ** layer.p.detach()
    assert torch.allclose(layer(x), want, atol=1e-5)
    assert not hasattr(layer, "log_q")


def test_clamps_project_p_and_weight_like_the_reference():
    layer = SharpCosSim2d(2, 3, 3)
    with torch.no_grad():
        layer.p.fill_(0.01)
        layer.weight.fill_(5.0)
    layer(torch.randn(1, 2, 4, 4))
    assert layer.p.min().item() == pytest.approx(0.1)
    assert layer.weight.max().item() == pytest.approx(1.0)


@pytest.mark.parametrize("cls", [SharpCosSim2d, SharpenedSDP2d])
@pytest.mark.parametrize("p", [0.1, 2.0])
def test_finite_gradients_at_zero_input_and_small_p(cls, p):
    layer = cls(3, 4, 3, padding=1)
    with torch.no_grad():
        layer.p.fill_(p)
    x = torch.zeros(2, 3, 6, 6, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and (y == 0).all()
    for t in (x.grad, layer.weight.grad, layer.p.grad):
        assert torch.isfinite(t).all()
    # A nearly-zero input with p at its floor: large but finite derivatives.
    x2 = torch.full((1, 3, 6, 6), 1e-9, requires_grad=True)
    layer(x2).sum().backward()
    assert torch.isfinite(x2.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_autocast_gives_finite_float32_output(dtype):
    layer = SharpCosSim2d(3, 8, 3, padding=1)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        y = layer(x)
    y.sum().backward()
    assert y.dtype == torch.float32 and torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    ref = layer(x.detach())
    assert (y - ref).abs().max().item() < 0.05  # half-precision dot products, float32 sharpening


def test_maxabs_pool_keeps_sign_of_largest_magnitude_and_ties_go_positive():
    pool = MaxAbsPool2d(2)
    x = torch.tensor([[[[1.0, -5.0], [2.0, 3.0]]]])
    assert pool(x).item() == -5.0
    tie = torch.tensor([[[[3.0, -3.0], [0.0, 1.0]]]])
    assert pool(tie).item() == 3.0
    tie2 = torch.tensor([[[[-3.0, 3.0], [0.0, 1.0]]]])
    assert pool(tie2).item() == 3.0


def test_maxabs_pool_gradient_goes_to_the_chosen_element_only():
    x = torch.tensor([[[[2.0, -2.0], [1.0, 0.0]]]], requires_grad=True)
    MaxAbsPool2d(2)(x).sum().backward()
    assert x.grad.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    x = torch.tensor([[[[2.0, -4.0], [1.0, 0.0]]]], requires_grad=True)
    MaxAbsPool2d(2)(x).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_maxabs_pool_ceil_mode_counts_partial_windows():
    x = torch.randn(1, 2, 15, 15)
    y = MaxAbsPool2d(2, ceil_mode=True)(x)
    assert y.shape == (1, 2, 8, 8)
    assert y[0, 0, 7, 7].item() == x[0, 0, 14, 14].item()


def _two_pass_maxabs(x, k, s, p, ceil_mode):
    """The previous MaxAbsPool2d, plain autograd through two poolings and a where: the reference."""
    largest = torch.nn.functional.max_pool2d(x, k, s, p, ceil_mode=ceil_mode)
    neg_smallest = torch.nn.functional.max_pool2d(-x, k, s, p, ceil_mode=ceil_mode)
    return torch.where(largest >= neg_smallest, largest, -neg_smallest)


@pytest.mark.parametrize("k,s,p,ceil_mode", [(2, 2, 0, True), (4, 4, 0, True), (3, 2, 1, False), (2, 2, 0, False)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_maxabs_pool_equals_the_two_pass_pooling_in_values_and_gradients(k, s, p, ceil_mode, channels_last):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 15, 15)
    x[:, :, 0:14:2, 0:14:2] = -x[:, :, 0:14:2, 1:14:2].abs()  # exact ties of -a and +a in many windows...
    x[:, :, 1:14:2, 1:14:2] = x[:, :, 1:14:2, 0:14:2].abs()    # ... in both scan orders
    x[:, 1] = 0.0  # all-zero windows
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fast, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = MaxAbsPool2d(k, s, p, ceil_mode)(fast), _two_pass_maxabs(ref, k, s, p, ceil_mode)
    grad = torch.randn_like(want)
    got.backward(grad)
    want.backward(grad)
    assert torch.equal(got, want) and torch.equal(fast.grad, ref.grad)


# -- the fused Function (fused.py) against plain autograd ---------------------------------------
from trainables.fused import sharpened_ratio  # noqa: E402
from trainables.layers import constrain_model_, sharpen  # noqa: E402


@pytest.mark.parametrize("with_norm", [True, False])
def test_fused_backward_passes_gradcheck_in_float64(with_norm):
    dot = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    norm = (torch.rand(2, 1, 4, 4, dtype=torch.float64) + 0.5).requires_grad_(with_norm)
    p = (torch.rand(1, 3, 1, 1, dtype=torch.float64) * 2 + 0.5).requires_grad_(True)
    args = (dot, norm if with_norm else None, p, 1e-6)
    assert torch.autograd.gradcheck(sharpened_ratio, args, eps=1e-7, atol=1e-5)


@pytest.mark.parametrize("cls,kwargs", [(SharpCosSim2d, {}), (SharpCosSim2d, {"groups": 4}),
                                        (SharpCosSim2d, {"p_value": 1.0}), (SharpenedSDP2d, {})])
def test_fused_layer_equals_plain_autograd_forward_and_backward(cls, kwargs):
    torch.manual_seed(1)
    fused = cls(4, 8, 3, 1, 1, **kwargs)
    plain = cls(4, 8, 3, 1, 1, fused=False, **kwargs)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 4, 7, 7)
    x[0, :, :3, :3] = 0  # exact zeros: the c == 0 branch of the hand-written derivative
    grads = []
    for layer in (fused, plain):
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((y.detach(), xi.grad, *(t.grad for t in layer.parameters())))
    for a, b in zip(*grads):  # float32 summed in another order: agree to 1e-5 of the largest entry
        assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (a - b).abs().max()


def test_fused_keeps_half_precision_dot_and_returns_float32_gradients_of_its_dtype():
    dot = torch.randn(2, 3, 4, 4).bfloat16().requires_grad_(True)
    norm = torch.rand(2, 1, 4, 4) + 0.5
    p = torch.full((1, 3, 1, 1), 0.1, requires_grad=True)
    y = sharpened_ratio(dot, norm, p, 1e-6)
    y.sum().backward()
    assert y.dtype == torch.float32 and dot.grad.dtype == torch.bfloat16
    want = sharpen(dot.detach().float() / norm, p.detach(), 1e-6)
    assert torch.equal(y.detach(), want)
    assert torch.isfinite(dot.grad.float()).all() and torch.isfinite(p.grad).all()


def test_constrain_model_projects_every_sharpened_layer():
    model = torch.nn.Sequential(SharpCosSim2d(2, 3, 3), SharpenedSDP2d(3, 3, 3), torch.nn.Conv2d(3, 3, 1))
    with torch.no_grad():
        for m in model[:2]:
            m.weight.fill_(-7.0)
            m.p.fill_(0.0)
        model[2].weight.fill_(-7.0)
    constrain_model_(model)
    for m in model[:2]:
        assert m.weight.min().item() == -1.0 and m.p.min().item() == pytest.approx(0.1)
    assert model[2].weight.min().item() == -7.0  # a plain conv is not the reference's to clamp


@pytest.fixture
def broken_compiler(monkeypatch):
    """torch.compile whose every compiled function raises, and kernels.py's caches emptied."""
    from trainables import kernels

    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("inductor exploded")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setattr(kernels, "_failures", {})
    return kernels


def test_fused_kernels_fall_back_to_the_same_eager_math_when_compiling_fails(broken_compiler, caplog):
    """On CUDA the fused bodies are compiled; a compiler failure must cost speed, never the trial."""
    from types import SimpleNamespace

    kernels = broken_compiler
    calls = []
    fake_cuda = SimpleNamespace(is_cuda=True, device=torch.device("cuda"))
    assert kernels.run_kernel("probe", lambda a: calls.append(a) or a * 2, True, fake_cuda, 21) == 42
    assert kernels._compiled["probe/cuda"] is None and "inductor exploded" in caplog.text
    assert kernels.run_kernel("probe", lambda a: a + 1, True, fake_cuda, 1) == 2  # no second attempt
    assert kernels.compile_failures() == ["compiled kernel probe/cuda: RuntimeError: inductor exploded"]


# -- windowed kernels (windowed.py): the same values and gradients as ATen's pooling after the layer ------
from trainables import windowed  # noqa: E402


@pytest.fixture
def traced_eagerly(monkeypatch):
    """The windowed kernels' math run as plain torch ops (what torch.compile traces): fast, and exact to
    compare; test_the_compiled_windowed_kernels_... compiles it for real once."""
    from trainables import kernels

    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setattr(kernels, "_failures", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)


def _ties(shape):
    """Random values with exact +a/-a ties in both scan orders, equal values and all-zero windows."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    x[:, :, 0:14:2, 0:14:2] = -x[:, :, 0:14:2, 1:14:2].abs()
    x[:, :, 1:14:2, 1:14:2] = x[:, :, 1:14:2, 0:14:2].abs()
    x[:, :, 2:14:4, 2:14:4] = x[:, :, 3:14:4, 3:14:4]
    x[:, 1] = 0.0
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("size", [15, 16])
@pytest.mark.parametrize("k,ceil_mode", [(2, True), (2, False), (4, True), (4, False)])
@pytest.mark.parametrize("absolute", [True, False])
def test_windowed_pooling_gives_atens_values_and_gradients(traced_eagerly, size, k, ceil_mode, absolute):
    x = _ties((3, 6, size, size))
    pool = MaxAbsPool2d(k, k, 0, ceil_mode) if absolute else torch.nn.MaxPool2d(k, k, 0, ceil_mode=ceil_mode)
    assert windowed.runs_windowed(pool, x, True) and not windowed.runs_windowed(pool, x, False)
    fast, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = windowed.window_pool(pool, fast)
    want = _two_pass_maxabs(ref, k, k, 0, ceil_mode) if absolute else F.max_pool2d(ref, k, k, 0, 1, ceil_mode)
    grad = torch.randn_like(want)
    got.backward(grad)
    want.backward(grad)
    assert torch.equal(got, want) and torch.equal(fast.grad, ref.grad)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_a_nan_in_any_window_position_passes_through_as_in_atens_pooling(traced_eagerly):
    x = _ties((1, 6, 16, 16))
    x[0, 0, 1, 1] = float("nan")  # the last element of the first window
    for pool in (MaxAbsPool2d(2), torch.nn.MaxPool2d(2)):
        assert windowed.window_pool(pool, x)[0, 0, 0, 0].isnan()
        assert pool(x)[0, 0, 0, 0].isnan()  # ATen's (compiled_kernels unset)


def test_only_non_overlapping_float32_channels_last_cpu_windows_run_windowed():
    x = _ties((2, 6, 15, 15))
    assert windowed.runs_windowed(MaxAbsPool2d(2, ceil_mode=True), x, True)
    assert not windowed.runs_windowed(MaxAbsPool2d(3, 2, 1), x, True)            # the ResNet stem overlaps
    assert not windowed.runs_windowed(torch.nn.MaxPool2d(2, 1), x, True)          # stride != kernel
    assert not windowed.runs_windowed(MaxAbsPool2d(2), x.contiguous(), True)     # NCHW
    assert not windowed.runs_windowed(MaxAbsPool2d(2), x.double(), True)
    assert not windowed.runs_windowed(MaxAbsPool2d(16), x, True)                 # window larger than input


@pytest.mark.parametrize("cls,kwargs", [(SharpCosSim2d, {}), (SharpCosSim2d, {"p_value": 1.5}),
                                        (SharpCosSim2d, {"groups": 6}), (SharpenedSDP2d, {})])
@pytest.mark.parametrize("pool", [MaxAbsPool2d(2, ceil_mode=True), torch.nn.MaxPool2d(2, ceil_mode=True),
                                  MaxAbsPool2d(4)], ids=["maxabs2", "max2", "maxabs4"])
def test_a_layer_fused_with_its_pooling_gives_the_same_values_and_gradients(traced_eagerly, cls, kwargs, pool):
    """Sharpening only the windows' winners gives the values of sharpening everything (here bit for bit: no
    two c of a window round to one y) and the same gradients up to float32 summation order."""
    torch.manual_seed(1)
    layer = cls(6, 12 if kwargs.get("groups") else 8, 3, 1, 1, **kwargs)
    x = _ties((3, 6, 15, 15))
    x[:, 2:4] = x[:, 2:4].sign() * 1e-3  # small patches: c near 0, where sign and eps matter
    layer.compiled_kernels = True
    fast, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = layer(fast, pool=pool)
    grad = torch.randn_like(got)
    got.backward(grad)
    fast_grads = [fast.grad] + [t.grad.clone() for t in layer.parameters()]
    layer.zero_grad()
    layer.compiled_kernels = False  # the layer's own sharpening, then the pooling
    want = pool(layer(ref))
    want.backward(grad)
    ref_grads = [ref.grad] + [t.grad for t in layer.parameters()]
    assert torch.equal(got, want)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


def test_the_compiled_windowed_kernels_match_atens_pooling_after_the_compiled_sharpening():
    """The kernels inductor builds (a CPU run compiles them for every trial of 200 steps or more)."""
    from trainables import kernels

    torch.manual_seed(2)
    layer, pool = SharpCosSim2d(6, 8, 3, 1, 1), MaxAbsPool2d(2, ceil_mode=True)
    x = _ties((3, 6, 15, 15))
    results = []
    for fused_pool in (True, False):
        layer.compiled_kernels = True
        inp = x.clone().requires_grad_(True)
        y = layer(inp, pool=pool) if fused_pool else pool(layer(inp))
        y.backward(torch.ones_like(y))
        results.append((y, inp.grad, layer.p.grad.clone()))
        layer.zero_grad()
    (y, dx, dp), (y_ref, dx_ref, dp_ref) = results
    assert not kernels.compile_failures("cpu")
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dp, dp_ref, rtol=1e-4, atol=1e-4)
    pooled = MaxAbsPool2d(2, ceil_mode=True)
    pooled.compiled_kernels = True
    assert torch.equal(pooled(x), _two_pass_maxabs(x, 2, 2, 0, True))
    # one kernel per layer shape for every batch size above 1: another batch size compiles nothing
    from torch._dynamo.utils import counters

    compiled_before = counters["frames"]["ok"]
    wider = _ties((5, 6, 15, 15))
    assert torch.equal(pooled(wider), _two_pass_maxabs(wider, 2, 2, 0, True))
    layer(wider.requires_grad_(True), pool=pool).sum().backward()
    assert counters["frames"]["ok"] == compiled_before


def test_a_windowed_kernel_that_fails_to_compile_sends_its_pooling_back_to_aten(broken_compiler, caplog):
    kernels = broken_compiler
    pool, x = MaxAbsPool2d(2, ceil_mode=True), _ties((2, 6, 15, 15))
    pool.compiled_kernels = True
    assert torch.equal(pool(x), _two_pass_maxabs(x, 2, 2, 0, True))  # the failing call: the same math, eagerly
    assert kernels.compile_failures("cpu") == ["compiled kernel pool maxabs k2 ceil/cpu: RuntimeError: inductor exploded"]
    assert not windowed.runs_windowed(pool, x, True) and torch.equal(pool(x), _two_pass_maxabs(x, 2, 2, 0, True))


def test_a_stage_without_pooling_or_with_batchnorm_runs_module_by_module(traced_eagerly):
    """Rohrer25K's depthwise stage has no pooling, and BatchNorm sits between layer and pooling; every
    other stage fuses, the last one's 4x4 window included."""
    from common.config import TrialConfig
    from trainables.models import build_model

    for normalization in ("none", "batchnorm"):
        model = build_model(TrialConfig(arch="rohrer25k", layer="scs", pooling="maxabs",
                                        normalization=normalization)).to(memory_format=torch.channels_last)
        x = torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        want = model(x)
        for m in model.modules():
            if hasattr(m, "compiled_kernels"):
                m.compiled_kernels = True
        fused_stages, h = [], x
        for stage in model.features:
            fused_stages.append(stage._pools_in_layer(h))
            h = stage(h)
        fuses = normalization == "none"
        assert fused_stages == [fuses, False, fuses, fuses]
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)


def test_every_thread_that_runs_a_compiled_kernel_raises_dynamos_recompile_limit():
    """Dynamo's config is per thread and Tune runs each trial in a new thread of a reused worker: a limit
    raised only where a kernel was first compiled left later trials at 8 entries, past which dynamo
    silently runs the kernels uncompiled."""
    import threading

    import torch._dynamo

    pool, x = MaxAbsPool2d(2, ceil_mode=True), _ties((2, 6, 15, 15))
    pool.compiled_kernels = True
    limits = []

    def trial():
        limits.append(torch._dynamo.config.cache_size_limit)
        pool(x)
        limits.append(torch._dynamo.config.cache_size_limit)

    for _ in range(2):  # the second thread finds the kernel compiled by the first
        thread = threading.Thread(target=trial)
        thread.start()
        thread.join()
    assert limits[0] == limits[2] < 256 and limits[1] == limits[3] == 256
