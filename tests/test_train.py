"""The training loop: it learns, restores exactly, reports what the store needs, stops on NaN."""
import math

import pytest
import torch

from common.config import TrialConfig
from trainables.train import NonFiniteLossError, Trainer


def cfg(**kw):
    base = dict(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs",
                dataset="synthetic", epochs=3, batch_size=64)
    base.update(kw)
    return TrialConfig(**base)


def test_short_training_beats_chance_clearly(tiny_data):
    trainer = Trainer(cfg(epochs=4), *tiny_data)  # OneCycle over 4 epochs: about 0.65 on this data
    results = [trainer.train_epoch() for _ in range(4)]
    assert results[-1].test_acc > 0.5  # chance is 0.1
    assert results[-1].train_loss < results[0].train_loss


def test_epoch_result_has_every_metric_and_layer_statistic(tiny_data):
    trainer = Trainer(cfg(epochs=1, batch_weight_norms=True), *tiny_data)
    r = trainer.train_epoch()
    assert r.epoch == 1 and r.train_time_s > 0 and r.eval_time_s > 0 and 0 < r.lr < 0.01
    assert [layer.layer_type for layer in r.layers] == ["scs", "scs", "scs", "scs", "linear"]
    first = r.layers[0]
    assert len(first.p_values) == 80 and first.p_min <= first.p_mean <= first.p_max
    assert first.q == pytest.approx(math.exp(trainer.model.features[0].layer.log_q.item()))
    assert first.weight_norm > 0 and first.grad_norm > 0
    assert len(first.weight_norm_per_batch) == 8  # 512 images / 64
    assert r.layers[-1].p_values is None


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_restore_mid_run_reproduces_the_next_epoch(tiny_data, tmp_path, dropout):
    """Bit for bit on the CPU, dropout's masks included (torch's global generator is in the checkpoint)."""
    config = cfg(epochs=3, dropout=dropout)
    straight = Trainer(config, *tiny_data)
    straight.train_epoch()
    straight.save(tmp_path / "ckpt.pt")
    expected = straight.train_epoch()

    resumed = Trainer(config, *tiny_data)
    resumed.load(tmp_path / "ckpt.pt")
    assert resumed.epoch == 1 and len(resumed.history) == 1
    got = resumed.train_epoch()
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert getattr(got, key) == getattr(expected, key), key
    assert got.layers[0].p_values == expected.layers[0].p_values


def test_a_trial_with_dropout_trains_the_same_whatever_ran_before_it_in_the_process(tiny_data):
    """Tune reuses worker processes: a trial's dropout masks come from its own seed, not from what the
    process's global generator went through before."""
    first = Trainer(cfg(epochs=2, dropout=0.5), *tiny_data).train_epoch()
    torch.rand(1000)  # another trial's draws
    again = Trainer(cfg(epochs=2, dropout=0.5), *tiny_data).train_epoch()
    assert again.train_loss == first.train_loss and again.test_acc == first.test_acc


def test_the_cpu_compiles_its_kernels_only_for_trials_long_enough_to_pay(tiny_data):
    from trainables.train import KERNEL_COMPILE_MIN_STEPS, compiles_kernels

    cpu = torch.device("cpu")
    assert not compiles_kernels("auto", cpu, KERNEL_COMPILE_MIN_STEPS - 1)
    assert compiles_kernels("auto", cpu, KERNEL_COMPILE_MIN_STEPS) and compiles_kernels("on", cpu, 1)
    assert not compiles_kernels("off", cpu, 10 ** 6) and compiles_kernels("auto", torch.device("cuda"), 1)
    steps = len(Trainer(cfg(epochs=1), *tiny_data).train_loader)  # 512 images of 64: 8 steps an epoch
    short = Trainer(cfg(epochs=KERNEL_COMPILE_MIN_STEPS // steps - 1), *tiny_data)
    long = Trainer(cfg(epochs=KERNEL_COMPILE_MIN_STEPS // steps), *tiny_data)
    # a conv net has kernels of its own to compile only with MaxAbsPool2d (nn.MaxPool2d stays ATen's)
    conv = Trainer(cfg(epochs=KERNEL_COMPILE_MIN_STEPS // steps, layer="conv"), *tiny_data)
    conv_max = Trainer(cfg(epochs=KERNEL_COMPILE_MIN_STEPS // steps, layer="conv", pooling="max"), *tiny_data)
    resnet_stem = Trainer(cfg(epochs=KERNEL_COMPILE_MIN_STEPS // steps, arch="resnet18", layer="conv"),
                          *tiny_data)  # its stem MaxAbsPool2d(3, 2, 1) overlaps: nothing to compile
    paths = (short.compile_path, long.compile_path, conv.compile_path, conv_max.compile_path,
             resnet_stem.compile_path)
    assert paths == ("no", "kernels", "kernels", "no", "no")


def test_checkpoint_of_another_config_is_refused_as_a_user_error(tiny_data, tmp_path):
    """A ValueError here made Tune retry a trial that could only fail again; a ConfigError (a ScsSweepError)
    fails it once with this line (orchestrator/trainable.py)."""
    from common.config import ConfigError

    a = Trainer(cfg(), *tiny_data)
    a.save(tmp_path / "a.pt")
    b = Trainer(cfg(layer="conv", activation="relu"), *tiny_data)
    with pytest.raises(ConfigError, match="written by another trial config .* not this trial's to resume"):
        b.load(tmp_path / "a.pt")


def test_nan_loss_stops_with_the_epoch_named(tiny_data):
    trainer = Trainer(cfg(layer="conv", activation="relu"), *tiny_data)
    with torch.no_grad():
        trainer.model.fc.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        trainer.train_epoch()


def test_sgd_multistep_and_init_from_a_trained_conv_net(tiny_data, tmp_path):
    conv = Trainer(cfg(arch="resnet20", layer="conv", activation="relu", optimizer="sgd",
                       scheduler="multistep", milestones=[1], max_lr=0.1, epochs=2, n_train=128), *tiny_data)
    conv.train_epoch()
    assert conv.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    conv.save(tmp_path / "conv.pt")
    scs = Trainer(cfg(arch="resnet20", layer="scs", init_from=str(tmp_path / "conv.pt")), *tiny_data)
    key = "layer1.0.conv1.weight"
    assert torch.equal(scs.model.state_dict()[key], conv.model.state_dict()[key])
    assert scs.copied_from_init > 20


def test_compiled_training_matches_eager_and_warm_up_changes_nothing(tiny_data):
    """compile="on" (inductor on the CPU; a GPU adds CUDA graphs) computes what the eager path does.

    BatchNorm is on so that warm_up()'s forward passes would show if their running statistics leaked.
    Adam at lr 0.01 amplifies float32 rounding differences from step to step, so the step is compared
    tightly and whole epochs loosely. MaxPool2d here: MaxAbsPool2d picks between +a and -a, so a
    rounding difference in a near-tie (BatchNorm centres values on 0) flips a sign, which no tolerance
    covers; MaxAbsPool2d's compiled forward is compared on its own below.
    """
    import torch.nn.functional as F

    maxabs = cfg(epochs=2, normalization="none", batch_size=128)
    eager, compiled = Trainer(maxabs, *tiny_data, compile="off"), Trainer(maxabs, *tiny_data, compile="on")
    compiled.model.load_state_dict(eager.model.state_dict())
    x, _ = next(iter(eager.test_loader))
    with torch.no_grad():
        assert (eager.model.eval()(x) - compiled._forward(x)).abs().max() < 1e-6

    config = cfg(epochs=2, normalization="batchnorm", batch_size=128, pooling="max")
    eager = Trainer(config, *tiny_data, compile="off")
    compiled = Trainer(config, *tiny_data, compile="on")
    compiled.model.load_state_dict(eager.model.state_dict())
    before = {k: v.clone() for k, v in compiled.model.state_dict().items()}
    assert compiled.warm_up() > 0 and compiled.compiled
    for k, v in compiled.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in compiled.model.parameters())

    x, y = next(iter(eager.test_loader))
    losses = []
    for trainer in (eager, compiled):
        trainer.model.train()
        loss = F.cross_entropy(trainer._forward(x).float(), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (name, a), b in zip(eager.model.named_parameters(), compiled.model.parameters()):
        assert (a.grad - b.grad).abs().max() <= 1e-2 * a.grad.abs().max() + 1e-7, name
        a.grad = b.grad = None
    compiled.model.load_state_dict(before)  # undo the BatchNorm statistics of that comparison step
    eager.model.load_state_dict(before)

    for _ in range(2):
        want, got = eager.train_epoch(), compiled.train_epoch()
        assert got.train_loss == pytest.approx(want.train_loss, rel=0.05)
        assert got.test_loss == pytest.approx(want.test_loss, rel=0.1)
    assert compiled.history[-1]["train_loss"] < compiled.history[0]["train_loss"]
    first = compiled.model.features[0].layer  # the clamps still hold without the in-forward projection
    assert first.weight.abs().max() <= 1.0 and first.p.min() >= 0.1


def test_unknown_compile_mode_is_refused(tiny_data):
    with pytest.raises(ValueError, match="compile must be one of"):
        Trainer(cfg(), *tiny_data, compile="fast")


def test_a_compile_failure_under_auto_falls_back_to_eager_and_says_why(tiny_data, monkeypatch):
    import trainables.train as train

    def broken(cuda_graphs):
        def call(model, x):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(train, "compiles", lambda mode, device: True)  # as on a GPU
    monkeypatch.setattr(train, "compiled_call", broken)
    trainer = Trainer(cfg(epochs=1), *tiny_data, compile="auto")
    trainer.train_epoch()
    assert trainer.compiled is False and trainer.compile_path == "no" and trainer.epoch == 1
    assert trainer.compile_error == "torch.compile failed, ran eagerly: RuntimeError: no C++ compiler"
