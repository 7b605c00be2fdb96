"""The benchmark harness runs end to end on the CPU and reports every figure the report needs."""
import json

import pytest
import torch

from trainables import bench


def test_bench_reports_epochs_warm_up_and_every_layer_implementation(capsys):
    argv = ["--arch", "rohrer25k", "--variants", "conv+relu+max,scs+none+maxabs", "--n-train", "128",
            "--n-test", "64", "--batch-size", "64", "--epochs", "1", "--warmup", "0", "--compile", "off",
            "--layers", "--shapes", "rohrer100k.l3", "--json"]
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in out["epochs"]] == ["conv", "scs"]
    for r in out["epochs"]:
        assert r["train_s_per_epoch"] > 0 and r["eval_s_per_epoch"] > 0
        assert r["compile_s"] == 0 and not r["compiled"] and r["compile_share_100_epochs"] == 0
    (layer,) = out["layers"]
    assert layer["shape"] == "rohrer100k.l3"
    for kind in ("reference", "unfused", "fused"):
        assert 0 < layer[f"{kind}_ms"] < float("inf") and layer[f"{kind}_over_conv"] > 0


@pytest.mark.parametrize("arch,prefix,image_dim", [("rohrer100k", "rohrer100k.", 32), ("rohrer583k", "rohrer583k.", 32),
                                                   ("resnet18", "resnet18@224.", 224)])
def test_bench_layer_shapes_are_the_models_own_layers(arch, prefix, image_dim):
    """Every timed shape (in, out, kernel, stride, padding, input size) occurs in the model it names."""
    import torch

    from common.config import TrialConfig
    from trainables.models import build_model, sharpened_layers

    model = build_model(TrialConfig(arch=arch, layer="scs", image_dim=image_dim))
    seen = set()
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.add(
        (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, args[0].shape[-1])))
        for _, m in sharpened_layers(model)]
    with torch.no_grad():
        model(torch.rand(1, 3, image_dim, image_dim))
    for h in hooks:
        h.remove()
    shapes = [s for s in bench.LAYER_SHAPES if s[0].startswith(prefix)]
    assert shapes
    for name, _, cin, cout, k, stride, pad, size in shapes:
        assert (cin, cout, k, stride, pad, size) in seen, name


def test_bench_markdown_has_one_row_per_shape(capsys):
    assert bench.main(["--layers-only", "--shapes", "rohrer100k.l2,rohrer100k.l3", "--compile", "off"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| rohrer100k.")]
    assert len(lines) == 2 and all(line.count("|") == 9 for line in lines)  # shape, conv, 3 times, 3 ratios


def test_bad_bench_options_are_one_clear_line(capsys):
    from orchestrator.cli import main

    for argv in (["--layers-only", "--shapes", "nope"], ["--variants", "scs+none+maxabz"], ["--n-train", "0"],
                 ["--device", "tpu9"]):
        assert bench.main(argv) == 2, argv
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("python -m trainables.bench: error: "), lines
    assert main(["bench", "--variants", "sdp+relu+nope"]) == 2  # the same through scs-sweep
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("scs-sweep bench: error: config key 'pooling' is 'nope'")


def test_check_device_names_the_flag_or_variable_a_bad_device_came_from(monkeypatch):
    """bench and evaluate share one --device check; a bad SCS_DEVICE is named as such."""
    from common.config import ConfigError
    from trainables.devices import check_device

    assert check_device("cpu") == torch.device("cpu")
    for requested, says in (("tpu9", "--device 'tpu9' is not a device"), ("meta", "--device 'meta': give cpu")):
        with pytest.raises(ConfigError, match=says):
            check_device(requested)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda:3: this machine has no GPU"):
            check_device("cuda:3")
    monkeypatch.setenv("SCS_DEVICE", "nope")
    with pytest.raises(ConfigError, match="SCS_DEVICE 'nope' is not a device"):
        check_device("")


def test_the_reference_pipeline_computes_the_projects_model_and_trains(tiny_data):
    """The bench's baseline is the same function as the project's model: the reference's layers, the same
    weights, the same logits; and its DataLoader loop trains."""
    from bench.reference_pipeline import ReferenceMaxAbsPool2d, reference_model, train_reference
    from common.config import TrialConfig
    from trainables.bench import ReferenceStyleSCS
    from trainables.models import build_model

    cfg = TrialConfig(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs", epochs=1, batch_size=64)
    ours, ref = build_model(cfg).eval(), reference_model(cfg).eval()
    kinds = {type(m) for m in ref.modules()}
    assert ReferenceStyleSCS in kinds and ReferenceMaxAbsPool2d in kinds
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() < 1e-4 * ours(x).abs().max()
    (row,) = train_reference(cfg, *tiny_data, epochs=1)
    assert row["train_s"] > 0 and 0 <= row["test_acc"] <= 1


def test_the_targets_bench_refuses_bad_options_in_one_line(capsys, tmp_path):
    from bench import targets

    for argv, says in ((["--quick-table1"], "--quick-table1 runs table1 on CIFAR-10: give its folder with --data"),
                       (["--data", str(tmp_path / "nowhere")], "is not a folder")):
        assert targets.main(argv) == 2
        (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert line.startswith("python -m bench.targets: error: ") and says in line


def test_a_targets_measurement_runs_on_the_code_its_pythonpath_names(tmp_path):
    """bench/targets_measure.py is run as a file with PYTHONPATH at the revision measured: here this checkout."""
    import json
    import os
    import subprocess
    import sys

    from bench.targets import MEASURE, ROOT

    args = dict(threads=1, variant="conv+relu+max", n_train=128, n_test=64, epochs=1, warmup=0, budget=1)
    done = subprocess.run([sys.executable, str(MEASURE), "epoch", json.dumps(args)], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["layer"] == "conv" and result["train_s_per_epoch"] > 0 and result["n_train"] == 128

