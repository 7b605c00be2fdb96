"""The GPU path, emulated on the CPU: what torch and Ray report is monkeypatched, checkpoints are loaded as
if onto another device, and a cluster's GPU nodes exist only in its autoscaler config."""
import hashlib
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.config import TrialConfig
from trainables.data import make_synthetic
from trainables.devices import Build, DeviceError, local_gpu_index, trial_device
from trainables.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def cfg(**kw):
    base = dict(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs", dataset="synthetic",
                epochs=3, batch_size=64)
    base.update(kw)
    return TrialConfig(**base)


# -- checkpoints ------------------------------------------------------------------------------------------
def test_a_checkpoint_restores_onto_another_device_with_its_rng_states_on_the_cpu(tiny_data, tmp_path,
                                                                                  monkeypatch):
    """Restoring onto a GPU read the checkpoint with map_location=the GPU, which moves the saved RNG states
    there too, and set_rng_state / Generator.set_state accept CPU byte tensors only: every retry and resume
    failed. Here the Trainer restores as if its device were a GPU (on this machine reading anything onto
    CUDA fails outright), and every RNG state it sets must be a CPU uint8 tensor."""
    config = cfg(dropout=0.5)
    straight = Trainer(config, *tiny_data)
    straight.train_epoch()
    straight.save(tmp_path / "trainer.pt")
    expected = straight.train_epoch()

    states = []
    real_set = torch.set_rng_state
    monkeypatch.setattr(torch, "set_rng_state", lambda s: (states.append(s), real_set(s))[1])
    resumed = Trainer(config, *tiny_data)
    real_gen = resumed.gen  # the loader's generator: the Trainer sets its state through this one

    class Recording:
        def set_state(self, s):
            states.append(s)
            real_gen.set_state(s)

    resumed.gen = Recording()
    resumed.device = torch.device("cuda")  # as a GPU trial's Trainer: load() must not read onto it
    resumed.load(tmp_path / "trainer.pt")
    resumed.device = torch.device("cpu")
    assert states and all(s.device.type == "cpu" and s.dtype == torch.uint8 for s in states)
    got = resumed.train_epoch()
    assert (got.train_loss, got.test_acc) == (expected.train_loss, expected.test_acc)


def test_a_checkpoint_written_on_a_gpu_restores_on_the_cpu(tiny_data, tmp_path):
    """A checkpoint of a GPU trial holds the GPU's RNG state too; a CPU trainer restores the rest."""
    straight = Trainer(cfg(), *tiny_data)
    straight.train_epoch()
    state = straight.state_dict()
    state["cuda_rng"] = torch.zeros(16, dtype=torch.uint8)  # what torch.cuda.get_rng_state() returns
    torch.save(state, tmp_path / "trainer.pt")
    expected = straight.train_epoch()
    resumed = Trainer(cfg(), *tiny_data)
    resumed.load(tmp_path / "trainer.pt")
    assert resumed.train_epoch().train_loss == expected.train_loss


# -- the device a trial trains on ------------------------------------------------------------------------
class _Built(Exception):
    """Raised by the stand-in Trainer once the trial has chosen its device."""


def _run_trial(monkeypatch, gpu_ids, cuda_available: bool, visible: str | None = None):
    """The trainable as Ray runs it, with what Ray and torch report replaced: (device the Trainer got, the
    trial's reports)."""
    import orchestrator.trainable as trainable
    import trainables.train
    from orchestrator.plan import resolve_trial

    reported, built = [], []

    class FakeTrainer:
        def __init__(self, cfg, device="", compile="auto"):
            built.append(torch.device(device) if device != "" else None)
            raise _Built

    monkeypatch.setattr(trainables.train, "Trainer", FakeTrainer)
    monkeypatch.setattr(trainable.ray, "get_gpu_ids", lambda: list(gpu_ids))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    monkeypatch.setattr(trainable, "tune", SimpleNamespace(report=reported.append, get_checkpoint=lambda: None))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    config = resolve_trial({"arch": "rohrer25k", "group": "g"}, {"epochs": 1, "dataset": "synthetic"}, "test")
    params = {"trial": {"group": "g", "budget": "smoke", "config": config}, "run": {"cpus_per_trial": 2}}
    try:
        trainable.train_scs(params)
    except _Built:
        pass
    return (built[0] if built else None), reported


def test_a_trial_ray_gave_no_gpu_trains_on_the_cpu_even_where_a_gpu_is_visible(monkeypatch):
    device, reported = _run_trial(monkeypatch, [], cuda_available=True)
    assert device == torch.device("cpu") and not reported


def test_a_trial_ray_gave_a_gpu_trains_on_that_gpu(monkeypatch):
    device, _ = _run_trial(monkeypatch, [3], cuda_available=True, visible="3")  # Ray narrows the visible GPUs
    assert device == torch.device("cuda", 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert local_gpu_index(3) == 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # where Ray left it alone, its id is the index
    assert local_gpu_index(2) == 2


def test_a_trial_given_a_gpu_torch_cannot_use_fails_at_once_in_one_line(monkeypatch):
    device, reported = _run_trial(monkeypatch, [0], cuda_available=False)
    assert device is None  # no Trainer: nothing trained on one CPU thread while Ray held the GPU
    (report,) = reported
    failure = report["failure"]
    assert failure.startswith("DeviceError: Ray gave this trial GPU 0 (CUDA_VISIBLE_DEVICES=unset), but torch cannot "
                              "use it: torch ")
    assert torch.__version__ in failure and "driver" in failure and "\n" not in failure
    assert report["test_acc"] != report["test_acc"]  # NaN: the trial ends as failed, with no retry


def test_the_device_line_names_the_build_cuda_and_driver_and_what_to_install():
    old_driver = Build("2.13.0", "13.0", "535.104.05", "12.2", False)
    assert old_driver.describe() == "torch 2.13.0 (CUDA 13.0 build), driver 535.104.05 (CUDA <= 12.2)"
    assert "SCS_TORCH_INDEX=https://download.pytorch.org/whl/cu126" in old_driver.fix()
    cpu_build = Build("2.13.0+cpu", "", "550.54", "12.4", False)
    assert "a CPU build" in cpu_build.describe() and "rm -rf .venv && ./dev.sh setup" in cpu_build.fix()
    assert "install the NVIDIA driver" in Build("2.13.0", "13.0", "", "", False).fix()
    assert Build("2.13.0", "13.0", "580.1", "13.0", True).fix() == ""
    with pytest.raises(DeviceError, match="trains on one"):
        trial_device([0, 1])


def test_dev_sh_on_a_gpu_node_whose_torch_cannot_use_the_gpu_stops_with_one_line(tmp_path):
    """`dev.sh setup` where nvidia-smi sees a GPU ends with torch.cuda.is_available() or one line saying what
    to install: here a fake nvidia-smi and this machine's CPU torch (the install step is already done)."""
    venv, tools = tmp_path / "venv", tmp_path / "bin"
    (venv / "bin").mkdir(parents=True)
    tools.mkdir()
    for path, text in ((venv / "bin" / "python", f'#!/bin/sh\nexec {sys.executable} "$@"\n'),
                       (tools / "nvidia-smi", "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n"
                                              "echo '| NVIDIA-SMI 535.104.05  Driver Version: 535.104.05  "
                                              "CUDA Version: 12.2 |'\n")):
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    # dev.sh takes torch's CUDA 12.6 build for this driver (CUDA 12.2), and its stamp records the index
    index = b"https://download.pytorch.org/whl/cu126\n"
    digest = hashlib.sha1((ROOT / "pyproject.toml").read_bytes() + index).hexdigest()[:12]
    (venv / f".installed-{digest}").write_text("torch (installed)\n")  # dev.sh's stamp: skip the install
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}", SCS_VENV=str(venv))
    env.pop("SCS_TORCH_INDEX", None)
    done = subprocess.run(["bash", str(ROOT / "dev.sh"), "setup"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("scs-sweep setup: this node has a GPU but torch cannot use it: torch ")
    assert "driver 535.104.05 (CUDA <= 12.2)" in line and "rm -rf .venv && ./dev.sh setup" in line
    assert "installed in" not in done.stdout


# -- the GPUs a sweep asks for ---------------------------------------------------------------------------
def _table1_plan(**options):
    from orchestrator.plan import RunOptions, plan_sweep
    from search_spaces import get_preset

    return plan_sweep("t1", "table1", get_preset("table1"), RunOptions(dataset="synthetic", **options))


def test_a_sweep_on_an_autoscaling_cluster_asks_for_gpus_its_nodes_have_not_started_yet(tmp_path, monkeypatch):
    """cluster.yaml's head advertises no GPU and its GPU workers start at zero: only the autoscaler's config
    (what `ray up` writes on the head) says GPUs can come, and the sweep must ask for them."""
    from orchestrator.gpus import AUTOSCALER_CONFIG_ENV, assign_gpus, gpu_supply

    config = tmp_path / "ray_bootstrap_config.yaml"
    config.write_text((ROOT / "cluster.yaml").read_text())
    monkeypatch.setenv(AUTOSCALER_CONFIG_ENV, str(config))
    supply = gpu_supply({"CPU": 0.0, "memory": 1e9}, on_cluster=True)
    assert supply.any and supply.now == 0 and supply.node_types == ("gpu_worker: 1 GPU each, up to 8 node(s)",)
    sweep = _table1_plan()
    (line,) = assign_gpus(sweep, None, False, supply)
    assert sweep.parts[0].gpus_per_trial == 0.25
    assert line.startswith("part table1: each trial asks for 1 CPU and 0.25 GPU (rohrer100k@32: 4 trials share a GPU")
    assert "gpu_worker: 1 GPU each" in line

    # an embedded Ray never reads a cluster file, and a cluster that has no GPU type trains on CPUs
    assert not gpu_supply({"CPU": 2.0}, on_cluster=False).any
    sweep = _table1_plan()
    (line,) = assign_gpus(sweep, None, False, gpu_supply({"CPU": 2.0}, on_cluster=False))
    assert sweep.parts[0].gpus_per_trial == 0 and "no GPU" in line


def test_fixed_gpu_nodes_smoke_tests_and_an_explicit_request_decide_the_gpus(monkeypatch, tmp_path):
    from orchestrator.gpus import AUTOSCALER_CONFIG_ENV, assign_gpus, gpu_supply

    monkeypatch.setenv(AUTOSCALER_CONFIG_ENV, str(tmp_path / "absent.yaml"))
    fixed = gpu_supply({"CPU": 32.0, "GPU": 4.0}, on_cluster=True)  # on-prem: the nodes have joined
    assert fixed.any and fixed.node_types == ()
    sweep = _table1_plan()
    assign_gpus(sweep, None, False, fixed)
    assert sweep.parts[0].gpus_per_trial == 0.25
    smoke = _table1_plan(smoke_test=True)
    (line,) = assign_gpus(smoke, None, True, fixed)
    assert smoke.parts[0].gpus_per_trial == 0 and "--smoke-test trains on the CPU" in line
    explicit = _table1_plan(gpus_per_trial=0.5)
    (line,) = assign_gpus(explicit, 0.5, False, fixed)
    assert explicit.parts[0].gpus_per_trial == 0.5 and "--gpus-per-trial 0.5" in line


def test_a_trial_asking_for_more_than_one_gpu_is_refused_before_anything_starts():
    """A trial trains on one GPU: --gpus-per-trial 2 used to be accepted and half the GPUs idled."""
    from orchestrator.errors import UsageError

    with pytest.raises(UsageError, match="a trial trains on one GPU"):
        _table1_plan(gpus_per_trial=2.0)
    assert _table1_plan(gpus_per_trial=1.0).parts[0].gpus_per_trial == 1.0


# -- slow paths -------------------------------------------------------------------------------------------
def test_fp16_steps_never_ask_the_scaler_for_its_scale_on_the_host(monkeypatch):
    """GradScaler.get_scale() copies the scale to the host: once per step it made every fp16 step wait for
    the GPU. Gradient norms are taken after unscale_ instead (fp16 autocast and the scaler run on the CPU)."""
    def no_sync(self):
        raise AssertionError("get_scale() in a training step")

    train, test = make_synthetic(300, 100)
    monkeypatch.setattr(torch.amp.GradScaler, "get_scale", no_sync)
    trainer = Trainer(cfg(layer="conv", activation="relu", pooling="max", precision="fp16", batch_size=128),
                      train, test, compile="off")
    assert trainer.scaler.is_enabled()
    result = trainer.train_epoch()
    first = result.layers[0].grad_norm
    assert 0 < first < 100  # the gradient's own size, not scaled by the loss scale (65,536)


def test_the_partial_last_batch_does_not_make_the_compiled_model_symbolic(caplog):
    """An epoch's last, partial batch is a second batch size; by default dynamo then recompiles the whole
    model with a symbolic batch size, and that slower graph serves every later step and trial of the
    process. The Trainer's compiled model specialises per batch size instead (compile=on: on the CPU too)."""
    train, test = make_synthetic(300, 100)  # batches of 128: 128, 128, 44; test 100
    torch._logging.set_logs(dynamic=logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="torch.fx.experimental.symbolic_shapes"):
            trainer = Trainer(cfg(layer="conv", activation="relu", pooling="max", epochs=2, batch_size=128),
                              train, test, compile="on")
            trainer.train_epoch()
    finally:
        torch._logging.set_logs()
    assert trainer.compiled
    symbols = [r.getMessage() for r in caplog.records if "create_symbol" in r.getMessage()]
    assert symbols == []


# -- the compiled GPU path: what only a GPU would show, emulated -------------------------------------------
def _as_if_cuda_graphs(trainer: Trainer) -> Trainer:
    """The Trainer's warm-up as it runs with CUDA graphs on a GPU (three runs per batch size), with nothing
    compiled: the model runs eagerly, so the test takes seconds."""
    trainer.cuda_graphs, trainer._warmed_up = True, False
    return trainer


def test_warm_up_under_cuda_graphs_sets_every_grad_to_none_before_each_run():
    """Warm-up ran forward and backward three times per batch size without clearing .grad: under CUDA graphs
    the first run's .grad lives in the graph's memory pool, the next run frees it, and `.grad += new` reads
    freed memory (torch's message: 'set .grad to None before each backward'); compile=auto then fell back
    to eager on every GPU trial. A hook sees every .grad before each warm-up forward."""
    train, test = make_synthetic(300, 100)
    trainer = _as_if_cuda_graphs(Trainer(cfg(layer="conv", activation="relu", pooling="max", batch_size=128),
                                         train, test, compile="off"))
    seen = []
    trainer.model.register_forward_pre_hook(
        lambda module, args: seen.append((module.training, all(p.grad is None for p in module.parameters()))))
    trainer.warm_up()
    training_runs = [clear for training, clear in seen if training]
    assert len(training_runs) == 6  # batches of 128 and 44, three runs each
    assert all(training_runs), training_runs
    assert trainer.compile_error == "" and all(p.grad is None for p in trainer.model.parameters())


def test_a_second_trainer_in_one_thread_leaves_the_cuda_graph_trees_to_torch(monkeypatch):
    """forget_cuda_graphs() reset torch's CUDA-graph trees when a trial warmed up: in the thread that had
    recorded them (a resumed Trainer, bench/gpu_check.py) it shut the tree down while dynamo kept the compiled
    graph ('Running CUDAGraph after shutdown'), and under Tune (a new thread per trial) it found none and freed
    nothing. Nothing resets them now; GPU trials get a fresh worker process each (next test)."""
    import torch._inductor.cudagraph_trees as trees

    def shut_down():
        raise AssertionError("the CUDA-graph trees were reset under a compiled graph that still uses them")

    monkeypatch.setattr(trees, "reset_cudagraph_trees", shut_down)
    train, test = make_synthetic(300, 100)
    for _ in range(2):  # a trial, then its restored Trainer in the same thread
        trainer = _as_if_cuda_graphs(Trainer(cfg(layer="conv", activation="relu", pooling="max", batch_size=128),
                                             train, test, compile="off"))
        trainer.warm_up()
        assert trainer.compile_error == ""


def test_gpu_trials_get_a_fresh_worker_process_and_cpu_trials_reuse_theirs(tmp_path):
    """A reused worker kept every earlier GPU trial's CUDA graphs and memory pools (their trees belong to the
    threads that recorded them); GPU trials now run without actor reuse, CPU trials keep it (compiled
    kernels serve every later trial)."""
    from orchestrator.storage import Storage
    from orchestrator.tuner import build_tuner

    for gpus, reused in ((0.25, False), (1.0, False), (0.0, True)):
        sweep = _table1_plan(smoke_test=True)
        part = sweep.parts[0]
        part.gpus_per_trial = gpus
        tuner = build_tuner(part, sweep, Storage(str(tmp_path / "runs")).sweep("t1"))
        assert tuner._local_tuner._tune_config.reuse_actors is reused, gpus


def test_fp16_gradient_norms_leave_out_the_steps_whose_gradients_overflowed():
    """unscale_ leaves overflowed gradients inf and the scaler only skips that step, but the epoch's mean
    gradient norm still added them: inf or NaN for a layer in the first epoch of fp16 (GradScaler's first
    steps usually overflow). Here the first three steps' gradients overflow, as fp16's would (a backward hook
    makes them inf), and the real scaler skips them: every layer's norm must stay finite and equal its mean
    over the steps that did not overflow."""
    train, test = make_synthetic(1024, 100)
    trainer = Trainer(cfg(layer="conv", activation="relu", pooling="max", batch_size=64), train, test,
                      compile="off")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)  # on, as with fp16 on a GPU
    first = trainer.layers[0][1].weight
    steps = []
    first.register_hook(lambda grad: grad * float("inf") if len(steps) < 3 else grad)
    step_norms = []
    real_norm = torch._foreach_norm

    def recording(tensors, *args, **kw):
        norms = real_norm(tensors, *args, **kw)
        if tensors and tensors[0] is first.grad:  # the step's gradient norms, after unscale_
            steps.append(1)
            step_norms.append(float(norms[0]) if torch.isfinite(norms[0]) else None)
        return norms

    torch._foreach_norm = recording
    try:
        result = trainer.train_epoch()
    finally:
        torch._foreach_norm = real_norm
    assert step_norms[:3] == [None] * 3 and None not in step_norms[3:] and len(step_norms) == 16
    assert trainer.scaler.get_scale() == 2.0 ** 7  # the scaler skipped and halved three times
    assert all(np.isfinite(layer.grad_norm) and layer.grad_norm > 0 for layer in result.layers)
    kept = step_norms[3:]
    assert result.layers[0].grad_norm == pytest.approx(sum(kept) / len(kept), rel=1e-5)


def test_a_trial_compiles_with_as_many_workers_as_it_has_cpus(monkeypatch):
    """Inductor starts min(32, the node's CPUs) compile workers per process: 8 GPUs with 4 packed trials each
    on a 96-core node would start over a thousand. A trial compiles with the CPUs Ray gave it."""
    import torch._inductor.config as inductor_config

    threads = torch.get_num_threads()
    try:
        with inductor_config.patch(compile_threads=32):  # a 32-core node's default
            _run_trial(monkeypatch, [], cuda_available=False)  # the run settings give the trial 2 CPUs
            assert inductor_config.compile_threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_the_node_check_fails_where_no_gpu_kernel_compiles_and_runs(monkeypatch, capsys):
    """`--require-gpu` passed a node with a GPU, a C compiler and Python's headers even where Triton could not
    build or launch a kernel (a driver too old for it): every trial there trained eagerly. It now compiles
    and runs one small kernel; here the GPU is emulated and the compiler fails as Triton would."""
    from trainables import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA A10G")
    monkeypatch.setattr(devices, "compiler_problems", lambda: [])

    def no_triton(*args, **kw):
        raise RuntimeError("Triton cannot find libcuda.so\nmore detail")

    monkeypatch.setattr(torch, "compile", no_triton)
    assert devices.main(["--require-gpu"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "torch.compile cannot build and run a GPU kernel here (RuntimeError: Triton cannot find libcuda.so)" in line
    monkeypatch.undo()
    assert devices.compile_probe("cpu") == ""  # the probe itself compiles and runs a kernel (C++ here)


def _dev_sh_with_fake_pip(tmp_path, driver_cuda: str | None, **env_vars):
    """dev.sh setup on a node whose nvidia-smi reports a GPU and a driver for `driver_cuda` (None: no GPU), with
    pip replaced by a recorder: returns the pip command lines dev.sh ran for torch."""
    venv, tools, log = tmp_path / "venv", tmp_path / "bin", tmp_path / "pip.log"
    (venv / "bin").mkdir(parents=True)
    tools.mkdir()
    python = (f'#!/bin/sh\nif [ "$1 $2" = "-m pip" ]; then echo "$@" >> {log}; exit 0; fi\n'
              f'if [ "$1 $2" = "-m trainables.devices" ]; then exit 0; fi\nexec {sys.executable} "$@"\n')
    smi = ("#!/bin/sh\necho 'GPU 0: NVIDIA A10G (UUID: GPU-0)'\n"
           f"echo '| NVIDIA-SMI 535.104.05  Driver Version: 535.104.05  CUDA Version: {driver_cuda} |'\n")
    for path, text in ((venv / "bin" / "python", python), (tools / "nvidia-smi", smi)):
        if driver_cuda is not None or path.name != "nvidia-smi":
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}", SCS_VENV=str(venv), **env_vars)
    env.pop("SCS_TORCH_INDEX", None)
    done = subprocess.run(["bash", str(ROOT / "dev.sh"), "setup"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in log.read_text().splitlines() if "torch>=" in line]


def test_dev_sh_takes_torchs_cuda_12_build_where_the_driver_is_older_than_cuda_13(tmp_path):
    """PyPI's torch 2.13 is a CUDA 13 build (driver 580 or newer) and cluster.yaml's `./dev.sh setup` never set
    SCS_TORCH_INDEX: on an older driver every GPU node ended set up with a torch that cannot use its GPU."""
    (old,) = _dev_sh_with_fake_pip(tmp_path / "old", "12.2")
    assert "--index-url https://download.pytorch.org/whl/cu126" in old
    (new,) = _dev_sh_with_fake_pip(tmp_path / "new", "13.0")
    assert "--index-url" not in new


def test_dev_sh_installs_torchs_cuda_build_on_a_login_node_without_a_gpu_when_asked(tmp_path):
    """A SLURM login node has no GPU, and dev.sh took the CPU build there: the GPU nodes that share the
    environment could not use their GPUs. SCS_TORCH=cuda takes the CUDA build anyway (no GPU check: the job
    checks its GPUs when it starts); without it the CPU build as before."""
    (cuda,) = _dev_sh_with_fake_pip(tmp_path / "cuda", None, SCS_TORCH="cuda")
    assert "--no-index" not in cuda and "whl/cpu" not in cuda
    cpu = _dev_sh_with_fake_pip(tmp_path / "cpu", None)
    assert cpu and ("--no-index" in cpu[0] or "whl/cpu" in cpu[0])
