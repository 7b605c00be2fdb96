"""Every arch x variant from the registry: builds, runs forward/backward, counts its parameters."""
import itertools

import pytest
import torch

from common.config import ACTIVATIONS, LAYERS, NORMALIZATIONS, POOLINGS, ConfigError, TrialConfig
from trainables.models import ARCH_SPECS, build_model, count_params, sharpened_layers

# Reference table (scs_reference.md §3.1, latest layer): SCS variants, no BatchNorm.
SCS_PARAMS = {"rohrer25k": 24_974, "rohrer47k": 47_653, "rohrer68k": 68_029,
              "rohrer100k": 113_741, "rohrer583k": 629_933}
# torchvision resnet18(num_classes=10) and akamaster resnet20 (reference §4.1), conv with BatchNorm.
CONV_PARAMS = {"resnet18": 11_181_642, "resnet20": 269_722}

VARIANTS = list(itertools.product(LAYERS, ACTIVATIONS, POOLINGS, NORMALIZATIONS))


@pytest.mark.parametrize("arch", list(ARCH_SPECS))
def test_parameter_counts_match_the_reference(arch):
    if arch in SCS_PARAMS:
        cfg = TrialConfig(arch=arch, layer="scs", normalization="none")
        assert count_params(build_model(cfg)) == SCS_PARAMS[arch]
        # conv twin: no p, no q, one bias per output channel instead
        scs = build_model(cfg)
        n_p = sum(m.p.numel() for _, m in sharpened_layers(scs))
        n_q = len(sharpened_layers(scs))
        conv = build_model(cfg.replace(layer="conv"))
        assert count_params(conv) == SCS_PARAMS[arch] - n_q
        assert n_p == sum(m.out_channels for _, m in sharpened_layers(scs))
    else:
        conv = build_model(TrialConfig(arch=arch, layer="conv"))
        assert count_params(conv) == CONV_PARAMS[arch]
        scs = build_model(TrialConfig(arch=arch, layer="scs"))
        extra = sum(m.out_channels + 1 for _, m in sharpened_layers(scs))
        assert count_params(scs) == CONV_PARAMS[arch] + extra


@pytest.mark.parametrize("arch", list(ARCH_SPECS))
def test_every_variant_builds_runs_and_backpropagates(arch):
    x = torch.rand(2, 3, 32, 32)
    for layer, act, pool, norm in VARIANTS:
        if arch == "resnet18" and (act, pool) != ("relu", "max") and layer == "sdp":
            continue  # covered by the scs/conv variants; keeps the CPU run short
        cfg = TrialConfig(arch=arch, layer=layer, activation=act, pooling=pool, normalization=norm)
        model = build_model(cfg)
        out = model(x)
        assert out.shape == (2, 10), cfg
        if arch.startswith("resnet") and (layer, norm) == ("sdp", "none"):
            # 17-19 unnormalised powers in a row overflow: the paper's "SharpenedSDP diverged" (Table 8)
            assert not torch.isfinite(out).all(), cfg
            continue
        out.logsumexp(1).sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (cfg, name)


def test_resnet18_at_224_and_fixed_p():
    cfg = TrialConfig(arch="resnet18", layer="scs", image_dim=224, p_mode="fixed", p_value=1.5)
    model = build_model(cfg)
    assert model(torch.rand(1, 3, 224, 224)).shape == (1, 10)
    assert all(m.p_fixed and m.p.flatten()[0].item() == 1.5 for _, m in sharpened_layers(model))


@pytest.mark.parametrize("arch", ["rohrer25k", "rohrer100k", "resnet20", "resnet18"])
def test_same_seed_same_initial_weights_across_variants(arch):
    states = []
    for layer, act, pool in [("conv", "relu", "max"), ("scs", "none", "maxabs"), ("sdp", "relu", "maxabs")]:
        states.append(build_model(TrialConfig(arch=arch, layer=layer, activation=act, pooling=pool,
                                              seed=7)).state_dict())
    shared = set(states[0]) & set(states[1]) & set(states[2])
    kernels = [k for k in shared if k.endswith("weight") and states[0][k].dim() == 4]
    assert len(kernels) >= 3
    for key in shared:
        if states[0][key].shape == states[1][key].shape == states[2][key].shape:
            assert torch.equal(states[0][key], states[1][key]) and torch.equal(states[1][key], states[2][key])
    # the two sharpened variants also share p
    p_keys = [k for k in set(states[1]) & set(states[2]) if k.endswith(".p")]
    assert p_keys and all(torch.equal(states[1][k], states[2][k]) for k in p_keys)
    other = build_model(TrialConfig(arch=arch, layer="conv", activation="relu", pooling="max", seed=8))
    assert not torch.equal(other.state_dict()[kernels[0]], states[0][kernels[0]])


def test_unknown_arch_and_keys_are_rejected_with_the_known_names():
    with pytest.raises(ConfigError, match="rohrer100k"):
        TrialConfig(arch="rohrer99k")
    with pytest.raises(ConfigError, match="unknown config key"):
        TrialConfig.from_dict({"arch": "rohrer100k", "lr": 0.1})
    with pytest.raises(ConfigError, match="must be int"):
        TrialConfig(epochs="3")
    with pytest.raises(ConfigError, match="224"):
        TrialConfig(arch="rohrer100k", image_dim=224)


def _old_order(model, x):
    """The Rohrer forward with the activation before the pool (layer -> norm -> act -> pool)."""
    for stage in model.features:
        x = stage.pool(stage.act(stage.norm(stage.layer(x))))
    return model.fc(x.flatten(1))


@pytest.mark.parametrize("arch", list(SCS_PARAMS))
def test_rohrer_relu_follows_the_pool_so_maxabs_differs_and_maxpool_does_not_move(arch):
    x = torch.rand(4, 3, 32, 32)
    for layer in ("conv", "scs", "sdp"):
        cfg = TrialConfig(arch=arch, layer=layer, activation="relu", pooling="max", seed=3)
        with_max, with_maxabs = build_model(cfg), build_model(cfg.replace(pooling="maxabs"))
        a, b = with_max.state_dict(), with_maxabs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # identical weights
        out_max, out_maxabs = with_max(x), with_maxabs(x)
        assert not torch.allclose(out_max, out_maxabs), (arch, layer)
        # ReLU is monotone, so it commutes with max-pooling: MaxPool2d variants are unchanged by the order
        torch.testing.assert_close(out_max, _old_order(with_max, x))
        # ... while the old order would have made MaxAbsPool2d after a ReLU a plain max-pool
        torch.testing.assert_close(_old_order(with_maxabs, x), out_max)
