"""The one training loop every trial runs: build, train an epoch, evaluate, save, restore.

`Trainer` holds model, optimizer, scheduler, data and the RNG that drives shuffling and augmentation;
`train_epoch()` returns one `EpochResult` (the epochs-table row plus per-layer statistics). Its state
(model, optimizer, scheduler, grad scaler, RNG, epoch, history) saves to one file that loads with
`weights_only=True`, and a restored Trainer continues exactly where the saved one stopped.

Nothing here knows about Ray: the orchestrator calls `train_epoch()` and reports what it returns.

The fast path (`compile="auto"`): on a GPU the model's forward and backward run as one torch.compile'd
graph replayed as CUDA graphs, the data never leaves the GPU and Adam is the fused kernel. On the CPU the
model runs eagerly in channels_last (max-pooling and mkldnn's convolutions run several times faster in it)
and only the SCS/SDP sharpening and the windowed pooling (fused.py, windowed.py) run as compiled kernels,
when the trial is long enough to pay for compiling them (`compiles_kernels`). Compilation happens in
`warm_up()` before the first epoch's clock starts; compiled functions are shared by the whole process,
so a later CPU trial in the same worker (Tune reuses CPU actors) finds them built, and inductor's disk
cache serves new processes (every GPU trial's: orchestrator/tuner.py, `reuses_workers`). `compile="on"`
compiles the whole model on the CPU too (how the tests check that both paths train identically);
`compile="off"` compiles nothing.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.config import ConfigError, TrialConfig
from common.errors import ScsSweepError
from common.vocabulary import COMPILE_MODES

from . import windowed
from .checkpoints import read_model_weights
from .data import DeviceLoader, ImageSet, load_dataset
from .devices import pick_device
from .kernels import allow_many_kernels, compile_failures
from .layers import MaxAbsPool2d, SharpCosSim2d, SharpenedSDP2d, constrain_model_
from .models import build_model, count_params, weight_layers

__all__ = ["Trainer", "EpochResult", "LayerStats", "NonFiniteLossError", "CHECKPOINT_FORMAT", "compiles",
           "compiles_kernels", "KERNEL_COMPILE_MIN_STEPS"]

CHECKPOINT_FORMAT = 1
log = logging.getLogger(__name__)


class NonFiniteLossError(ScsSweepError):
    """The loss became NaN or infinite; the message names the epoch. A user's settings cause it (a learning
    rate too high for the variant), and a retry would only repeat it: the trial fails, not retried."""


@dataclass
class LayerStats:
    """One row of the layers table (per trial, epoch and weight layer)."""
    layer_index: int
    layer_name: str
    layer_type: str                  # conv | scs | sdp | linear
    weight_norm: float               # L2 norm of the weight after the epoch
    grad_norm: float                 # mean over the epoch's steps of the weight gradient's L2 norm (steps whose
                                     # fp16 gradients overflowed, which the scaler skips, left out; NaN if all)
    p_mean: float | None = None
    p_min: float | None = None
    p_max: float | None = None
    q: float | None = None
    p_values: list | None = None
    weight_norm_per_batch: list | None = None


@dataclass
class EpochResult:
    """One row of the epochs table, plus the layer rows of the same epoch."""
    epoch: int                       # 1-based: the number of epochs completed
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    train_time_s: float
    eval_time_s: float
    lr: float                        # learning rate at the end of the epoch
    layers: list[LayerStats] = field(default_factory=list)

    def metrics(self) -> dict:
        """The scalar metrics (what a scheduler or progress view needs)."""
        d = dataclasses.asdict(self)
        d.pop("layers")
        return d


def _layer_type(m: nn.Module) -> str:
    if isinstance(m, SharpCosSim2d):
        return "scs"
    if isinstance(m, SharpenedSDP2d):
        return "sdp"
    return "linear" if isinstance(m, nn.Linear) else "conv"


# On the CPU, compiling the sharpening and pooling kernels costs 23-30 s for Rohrer100K in a process with
# an empty inductor cache (4-5 s once its disk cache holds them) and saves 20-60 ms per step of 128 images
# (much more against the eager sharpening), so `auto` compiles them for trials of at least this many
# steps (a quick run's 8 epochs x 40 steps: yes; a smoke test: no).
# Compiling the whole model on the CPU took 74 s for Rohrer100K SCS and made conv nets slower, so `auto`
# leaves the rest eager there (bench/report.md).
KERNEL_COMPILE_MIN_STEPS = 200


# The modules with compiled kernels of their own (fused.py, windowed.py), switched on by compiles_kernels;
# a MaxAbsPool2d only where its windows do not overlap (the ResNet stem's do: it stays eager)
KERNEL_MODULES = (SharpCosSim2d, SharpenedSDP2d, MaxAbsPool2d)


def compiles(mode: str, device: torch.device) -> bool:
    """Whether a compile mode compiles the whole model on this device (auto: on a GPU only)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compiles_kernels(mode: str, device: torch.device, steps: int) -> bool:
    """Whether KERNEL_MODULES run their compiled kernels: on a GPU unless off; on the CPU when asked
    (on), or (auto) when the trial trains at least KERNEL_COMPILE_MIN_STEPS steps."""
    if mode == "off":
        return False
    return mode == "on" or device.type == "cuda" or steps >= KERNEL_COMPILE_MIN_STEPS


_compiled_calls: dict[str, object] = {}


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def compiled_call(cuda_graphs: bool):
    """One compiled `model(x)` per process: any model instance of an already-seen architecture reuses
    its graphs (dynamo guards on the module's structure and mode, not on the instance)."""
    mode = "reduce-overhead" if cuda_graphs else None
    # Every variant x train/eval x batch size of a sweep is one cache entry; the default limit (8) would
    # silently send the rest of a reused worker's trials back to eager. Per call: the limit is per thread.
    allow_many_kernels()
    if mode not in _compiled_calls:
        # dynamic=False: one static graph per batch size. An epoch's last, partial batch is a second size,
        # and by default dynamo then recompiles the model with a symbolic batch size, and that graph
        # (slower kernels, a CUDA graph recorded per size) serves every later step of every later trial
        # in the process. Static: 2 sizes x train/eval = 4 graphs per architecture, each at full speed.
        _compiled_calls[mode] = torch.compile(_call, mode=mode, dynamic=False)
    return _compiled_calls[mode]


class Trainer:
    """Trains one TrialConfig; pass data sets to share them between trials of one process."""

    def __init__(self, cfg: TrialConfig, train: ImageSet | None = None, test: ImageSet | None = None,
                 device: str | torch.device = "", compile: str = "auto", load_init: bool = True):
        """load_init=False skips cfg.init_from: the caller loads trained weights of its own (evaluate)."""
        self.cfg = cfg
        self.device = pick_device(str(device)) if not isinstance(device, torch.device) else device
        if train is None or test is None:
            train, test = load_dataset(cfg.dataset, cfg.data_dir, cfg.n_train, cfg.n_test, cfg.seed)
        self.train_set, self.test_set = train.to(self.device), test.to(self.device)
        on_gpu = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            cfg.precision, torch.bfloat16 if cfg.precision == "auto" and on_gpu else None)
        # channels_last everywhere: cuDNN's fastest kernels on a GPU, and on the CPU max-pooling (vectorized
        # over channels) and mkldnn's convolutions run several times faster in it than in NCHW
        self.model = build_model(cfg).to(self.device).to(memory_format=torch.channels_last)
        if on_gpu:  # autotuning picks cuDNN's fastest kernels for the fixed shapes of a trial
            torch.backends.cudnn.benchmark = True
        self.copied_from_init = self._load_init_weights(cfg.init_from) if cfg.init_from and load_init else 0
        self.layers = weight_layers(self.model)
        self.n_params = count_params(self.model)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # dropout draws from torch's global generators: seeded per trial (a reused worker process has run
        # other trials), saved with every checkpoint, and left untouched by warm_up()
        torch.manual_seed(cfg.seed)
        self.train_loader = DeviceLoader(self.train_set, cfg.batch_size, cfg.image_dim, train=True,
                                         gen=self.gen, channels_last=True)
        self.test_loader = DeviceLoader(self.test_set, cfg.batch_size, cfg.image_dim, channels_last=True)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch = 0
        self.history: list[dict] = []  # scalar metrics of every finished epoch
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {compile!r}")
        self.compile_mode = compile
        self.compiled = compiles(compile, self.device)
        self.cuda_graphs = self.compiled and on_gpu
        kernel_modules = [m for m in self.model.modules() if isinstance(m, KERNEL_MODULES)
                          and not (isinstance(m, MaxAbsPool2d) and windowed.window_of(m) is None)]
        self.kernels_compiled = bool(kernel_modules) and compiles_kernels(
            compile, self.device, cfg.epochs * len(self.train_loader))
        for m in kernel_modules:
            m.compiled_kernels = self.kernels_compiled
        self.compile_s = 0.0     # seconds warm_up() spent compiling (and capturing CUDA graphs)
        self.compile_error = ""  # why compile="auto" fell back to eager, if it did
        self._warmed_up = not (self.compiled or self.kernels_compiled)

    @property
    def compile_path(self) -> str:
        """What runs compiled: 'model + CUDA graphs', 'model', 'kernels' or 'no'."""
        if self.compiled:
            return "model + CUDA graphs" if self.cuda_graphs else "model"
        return "kernels" if self.kernels_compiled and not self._kernel_failures() else "no"

    def _kernel_failures(self) -> list[str]:
        return compile_failures(self.device.type) if self.kernels_compiled else []

    @property
    def compile_problems(self) -> str:
        """Why what this trial asked to compile runs eagerly ('' when nothing failed)."""
        return "; ".join(filter(None, [self.compile_error, *self._kernel_failures()]))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self.model(x)
        if self.cuda_graphs:  # a new step: outputs of the previous replay may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        return compiled_call(self.cuda_graphs)(self.model, x)

    # -- construction -------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"  # one kernel for all parameters instead of several per tensor
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.max_lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, fused=fused or None)
        return torch.optim.Adam(params, lr=cfg.max_lr, weight_decay=cfg.weight_decay, fused=fused or None)

    def _make_scheduler(self):
        cfg = self.cfg
        if cfg.scheduler == "onecycle":  # stepped per batch, all other arguments PyTorch defaults
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=cfg.max_lr, epochs=cfg.epochs, steps_per_epoch=len(self.train_loader))
        if cfg.scheduler == "multistep":  # stepped per epoch
            return torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(cfg.milestones), cfg.gamma)
        return None

    def _load_init_weights(self, path: str) -> int:
        """Copy every tensor whose name and shape match (a conv net's kernels into its SCS twin)."""
        source = read_model_weights(path)  # on the CPU: load_state_dict copies to the device
        target = self.model.state_dict()
        matched = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
        if not matched:
            raise ConfigError(f"init_from {path}: no tensor matches {self.cfg.arch}'s names and shapes")
        self.model.load_state_dict(matched, strict=False)
        return len(matched)

    # -- compilation --------------------------------------------------------------------------------
    def _batch_sizes(self, n: int) -> list[int]:
        bs = min(self.cfg.batch_size, n)
        return [bs] + ([n % bs] if n % bs else [])

    def warm_up(self) -> float:
        """Compile (and capture) every graph an epoch will replay, before any epoch is timed.

        Runs forward+backward for the training batch sizes and forward for the test batch sizes on
        constant inputs, then puts back the BatchNorm statistics and drops the gradients, so training
        continues exactly as if nothing had run. With compile="auto" a failure falls back to eager.
        """
        if self._warmed_up:
            return self.compile_s
        self._warmed_up = True
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        rng = self._rng_state()
        fmt = self.train_loader.memory_format  # the layout the real batches arrive in
        dim = self.cfg.image_dim
        self._sync()
        start = time.perf_counter()
        # No reset of torch's CUDA-graph trees here: they belong to the thread that recorded them (a Tune trial
        # runs in a thread of its own, so a reset from a later trial finds none), and resetting them in the
        # thread that has them leaves dynamo's compiled graph pointing at a shut-down tree ("Running CUDAGraph
        # after shutdown"). A second model in one process makes the tree record anew for its parameters'
        # addresses; GPU trials get a fresh worker process each (tuner.py), whose graphs end with it.
        try:
            for train, n in ((True, len(self.train_set)), (False, len(self.test_set))):
                self.model.train(train)
                for b in self._batch_sizes(n):
                    # constant images: what compiles is the shape, and no RNG stream is touched
                    x = torch.full((b, 3, dim, dim), 0.5, device=self.device).contiguous(memory_format=fmt)
                    for _ in range(3 if self.cuda_graphs else 1):  # CUDA graphs: warm, record, replay
                        # .grad set to None before every backward, as training steps do: under CUDA graphs
                        # a .grad made by one run lives in the graph's memory pool, the next run frees it,
                        # and `.grad += new` would read freed memory (torch/_inductor/cudagraph_trees.py,
                        # "set .grad to None before each backward")
                        self.model.zero_grad(set_to_none=True)
                        with torch.set_grad_enabled(train), self._autocast():
                            logits = self._forward(x)
                        if train:
                            logits.float().sum().backward()
                        del logits
            self._sync()
        except Exception as exc:  # noqa: BLE001 - any compiler or capture failure
            if self.compile_mode != "auto":
                raise
            log.warning("torch.compile failed (%s: %s); this trial runs eagerly", type(exc).__name__, exc)
            self.compile_error = f"torch.compile failed, ran eagerly: {type(exc).__name__}: {exc}"[:300]
            self.compiled = self.cuda_graphs = False
        finally:
            self.model.zero_grad(set_to_none=True)
            self._set_rng_state(rng)
            with torch.no_grad():
                for name, b in self.model.named_buffers():
                    b.copy_(buffers[name])
        self.compile_s = time.perf_counter() - start
        return self.compile_s

    # -- one epoch ------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def train_epoch(self) -> EpochResult:
        self.warm_up()
        cfg, model = self.cfg, self.model
        model.train()
        weights = [m.weight for _, m in self.layers]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        grad_norm_sum = torch.zeros(len(weights), device=self.device)
        grad_norm_steps = torch.zeros(len(weights), device=self.device)  # steps with a finite gradient, per layer
        per_batch = []
        self._sync()
        start = time.perf_counter()
        for x, y in self.train_loader:
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                logits = self._forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            self.scaler.scale(loss).backward()
            # the gradients' true size: unscale_ divides them by the fp16 loss scale on the device (step()
            # then does not divide again); get_scale() would copy the scale to the host at every step
            self.scaler.unscale_(self.optimizer)
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]
            norms = torch.stack(torch._foreach_norm(grads)).float()
            # an fp16 step whose gradients overflowed stays inf after unscale_ and the scaler skips it: it
            # measured nothing, so each layer's mean is over its finite steps (on the device: no host sync)
            finite = torch.isfinite(norms)
            grad_norm_sum += torch.where(finite, norms, 0.0)
            grad_norm_steps += finite
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.compiled:  # the compiled forward leaves the reference's clamps to us (layers.py)
                constrain_model_(model)
            if cfg.scheduler == "onecycle":
                self.scheduler.step()
            if cfg.batch_weight_norms:
                per_batch.append(torch.stack(torch._foreach_norm(weights)).float())
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        if cfg.scheduler == "multistep":
            self.scheduler.step()
        self._sync()
        train_time = time.perf_counter() - start
        self.epoch += 1
        n = len(self.train_set)
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"training loss became {train_loss} in epoch {self.epoch} "
                                     f"({cfg.arch} {cfg.layer}/{cfg.activation}/{cfg.pooling}): diverged")
        test_loss, test_acc, eval_time = self.evaluate()
        result = EpochResult(
            epoch=self.epoch, train_loss=train_loss, train_acc=correct.item() / n,
            test_loss=test_loss, test_acc=test_acc, train_time_s=train_time, eval_time_s=eval_time,
            lr=self.optimizer.param_groups[0]["lr"],
            layers=self._layer_stats(grad_norm_sum / grad_norm_steps, per_batch))  # NaN: no finite step
        self.history.append(result.metrics())
        return result

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, float]:
        """(loss, accuracy, seconds) on the whole test set, BatchNorm in eval mode."""
        self.warm_up()
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._sync()
        start = time.perf_counter()
        for x, y in self.test_loader:
            with self._autocast():
                logits = self._forward(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        self._sync()
        elapsed = time.perf_counter() - start
        n = len(self.test_set)
        return loss_sum.item() / n, correct.item() / n, elapsed

    @torch.no_grad()
    def _layer_stats(self, grad_norms: torch.Tensor, per_batch: list) -> list[LayerStats]:
        norms = torch.stack(torch._foreach_norm([m.weight for _, m in self.layers])).float().tolist()
        grad_norms = grad_norms.tolist()
        batch_norms = torch.stack(per_batch).T.tolist() if per_batch else None
        rows = []
        for i, (name, m) in enumerate(self.layers):
            row = LayerStats(i, name, _layer_type(m), norms[i], grad_norms[i])
            if isinstance(m, (SharpCosSim2d, SharpenedSDP2d)):
                p = m.p.detach().clamp(min=m.p_min).flatten().float()
                row.p_mean, row.p_min, row.p_max = p.mean().item(), p.min().item(), p.max().item()
                row.p_values = p.tolist()
                if isinstance(m, SharpCosSim2d):
                    row.q = m.log_q.exp().item()
            if batch_norms is not None:
                row.weight_norm_per_batch = batch_norms[i]
            rows.append(row)
        return rows

    # -- state ----------------------------------------------------------------------------------
    def _rng_state(self) -> dict:
        """torch's global generators (dropout's): the CPU's, and the GPU's on a GPU."""
        cuda = self.device.type == "cuda"
        return {"torch_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None}

    def _set_rng_state(self, state: dict) -> None:
        # generator states are CPU byte tensors on every device (set_rng_state refuses any other)
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict(),
            "rng": self.gen.get_state(),
            **self._rng_state(),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint that does not fit its trial is the user's to sort out (a sweep folder reused or edited):
        # ConfigError, which fails the trial once instead of Tune retrying what can only fail again
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT} (written by another "
                              f"version of scs-sweep); start the sweep anew under another --name")
        saved = TrialConfig.from_dict(state["config"])
        if saved.config_hash() != self.cfg.config_hash():
            raise ConfigError(f"the checkpoint was written by another trial config ({saved.arch} {saved.layer}/"
                              f"{saved.activation}/{saved.pooling}, seed {saved.seed}) than this trial's; it is not "
                              f"this trial's to resume: start the sweep anew under another --name")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["rng"].cpu())
        self._set_rng_state(state)
        self.epoch = state["epoch"]
        self.history = list(state["history"])

    def save(self, path: str | Path) -> None:
        """Write atomically: a killed save never leaves a half-written checkpoint behind."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written on any device: read onto the CPU (where the RNG states must stay),
        then model, optimizer and scaler copy their tensors to this Trainer's device."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs
