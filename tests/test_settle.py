"""`scs-sweep settle`: bad input is one line before anything starts; looks add seeds only to the variants open
claims compare; decisions, the path and the seeds spent are recorded; a killed settle continues where it stopped
and never trains a (config, seed) twice. Training is replaced by planted results (the loop is what is tested
here; tests/test_sweeps.py runs real trials through Ray)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from orchestrator.cli import main
from results.rows import rows_for_trial
from results.store import ParquetStore
from support.cli import cli_many

SWEEP = """
name = "planted"
epochs = 2
paper_table = "table1"

[fixed]
arch = "rohrer25k"
pooling = "max"
batch_size = 64

[[grid]]
layer = ["conv", "scs"]
activation = ["relu", "none"]
"""
# per variant: best accuracy; Conv2d needs ReLU by 0.20 (decided at once), SCS/None sits 0.001 above
# Conv2d/ReLU - 0.03 (open to the end)
PLANTED = {("conv", "relu"): 0.70, ("conv", "none"): 0.50, ("scs", "none"): 0.671, ("scs", "relu"): 0.60}


class FakeTuner:
    """tuner.execute as settle calls it, writing each trial's planted rows into the store."""

    def __init__(self, store, stop_at_look=None):
        self.store, self.stop_at_look, self.trained = store, stop_at_look, []

    def execute(self, sweep, resume=False, parts=None):
        for part in parts:
            if self.stop_at_look and part.part.endswith(f"look{self.stop_at_look}"):
                raise KeyboardInterrupt
            for i, trial in enumerate(part.trials):
                c = trial["config"]
                noise = np.random.default_rng(c["seed"] * 7 + i).normal(0, 0.004)
                acc = PLANTED[(c["layer"], c["activation"])] + 0.02 * np.sin(c["seed"]) + noise
                tid = f"{part.part.replace('-', '')}_{i:05d}"
                results = [{"epoch": e, "test_acc": acc * e / 2, "train_time_s": 1.0, "eval_time_s": 0.1,
                            "ended_at": 1.8e9 + len(self.trained) * 10 + e, "time_this_iter_s": 1.0}
                           for e in (1, 2)]
                self.store.write_trial(sweep.name, tid, rows_for_trial(sweep.name, tid, trial["group"],
                                                                       trial["budget"], c, results, "done",
                                                                       paper_table="table1"))
                self.trained.append(json.dumps(c, sort_keys=True))
        return []


@pytest.fixture
def fake_ray(monkeypatch):
    import orchestrator.commands as commands
    import orchestrator.settle as settle

    made = {}

    def start_sweep(args, sweep, text, options):
        from results.store import get_store

        get_store(sweep.store).write_sweep(sweep.name, text)
        made["tuner"] = made.get("tuner") or FakeTuner(get_store(sweep.store))
        return made["tuner"]

    monkeypatch.setattr(commands, "start_sweep", start_sweep)
    monkeypatch.setattr(commands, "connected_tuner", lambda address: made["tuner"])
    monkeypatch.setattr(settle, "_slots", lambda parts, fallback: 2)
    return made


def _settle(tmp_path, *extra):
    (tmp_path / "planted.toml").write_text(SWEEP)
    return main(["settle", str(tmp_path / "planted.toml"), "--dataset", "synthetic", "--no-evaluate", "--max-seeds",
                 "6", "--first", "3", "--storage", str(tmp_path / "runs"), "--store", str(tmp_path / "store"), *extra])


def test_settle_adds_seeds_only_where_a_claim_is_open_and_records_its_path(tmp_path, fake_ray, capsys):
    assert _settle(tmp_path) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "runs" / "planted" / "settle.json").read_text())
    claims = record["claims"]["planted"]
    relu = claims["Conv2d needs ReLU"]
    assert relu["decided"] == "supported" and relu["look"] == 1 and relu["seeds"] == 3
    scs = claims["SCS without ReLU is as accurate as Conv2d with ReLU"]
    assert not scs.get("decided") and scs["undecided"] == "undecided at 6 seeds" and len(scs["path"]) == 4
    assert [p["seeds"] for p in scs["path"]] == [3, 4, 5, 6]
    # the repeated interval narrows as seeds come in, and its critical value falls with the looks
    assert scs["path"][0]["c"] > scs["path"][-1]["c"]
    trained = [json.loads(c) for c in fake_ray["tuner"].trained]
    by_variant = {}
    for c in trained:
        by_variant.setdefault((c["layer"], c["activation"]), []).append(c["seed"])
    # after look 1 only the two variants the open claim compares got seeds 3-5; no (config, seed) twice
    assert sorted(by_variant[("scs", "none")]) == sorted(by_variant[("conv", "relu")]) == list(range(6))
    assert sorted(by_variant[("conv", "none")]) == sorted(by_variant[("scs", "relu")]) == [0, 1, 2]
    assert len(trained) == len(set(map(json.dumps, trained))) == 18 and record["fixed_trials"] == 24
    assert "Conv2d needs ReLU: SUPPORTED after 3 seeds (look 1 of 4)" in out
    assert "18 trials trained of the 24 a fixed design at 6 seeds needs" in out
    # the record is in the store, for the report; status shows the design and where each claim stands
    assert ParquetStore(str(tmp_path / "store")).read_settle("planted")["looks_done"] == 4
    assert main(["status", "planted", "--storage", str(tmp_path / "runs")]) == 0
    status = capsys.readouterr().out
    assert "a settle (pocock spending, alpha 0.05, first 3 seeds, at most 6); 4 look(s) taken" in status
    assert "Conv2d needs ReLU: supported at this budget, decided after 3 seeds (look 1 of 4)" in status


def test_the_report_shows_the_design_and_each_claims_path(tmp_path, fake_ray):
    from results.report import write_report

    assert _settle(tmp_path) == 0
    page = write_report(ParquetStore(str(tmp_path / "store")), tmp_path / "report").read_text()
    assert "Sequential seeds: the design and each claim" in page and "pocock alpha spending" in page
    assert "18 trials trained (36 trial-epochs) against the 24 (48) a fixed design at 6 seeds needs" in page
    assert page.count("<td>decided</td>") == 0 and "supported</td>" in page  # the deciding look says its verdict


def test_a_killed_settle_continues_where_it_stopped_and_keeps_the_looks_it_took(tmp_path, fake_ray, capsys):
    import orchestrator.settle as settle

    fake_ray["tuner"] = FakeTuner(ParquetStore(str(tmp_path / "store")), stop_at_look=3)
    assert _settle(tmp_path) == 130  # Ctrl-C (or a kill) during look 3
    path = tmp_path / "runs" / "planted" / "settle.json"
    before = json.loads(path.read_text())
    assert before["looks_done"] == 2
    fake_ray["tuner"].stop_at_look = None
    args = SimpleNamespace(name="planted", storage=str(tmp_path / "runs"), store="", address="")
    from orchestrator.plan import SweepPlan

    sweep = SweepPlan.load(tmp_path / "runs" / "planted" / "sweep.json")
    assert settle.continue_settle(args, sweep) == 0
    after = json.loads(path.read_text())
    assert after["looks_done"] == 4
    for name, claim in before["claims"]["planted"].items():
        assert after["claims"]["planted"][name]["path"][:2] == claim["path"]  # the looks taken do not change
    trained = fake_ray["tuner"].trained
    assert len(trained) == len(set(trained)) == 18  # nothing trained twice across the kill
    # running the same settle again finds it done: no look left, nothing trained
    assert _settle(tmp_path) == 0 and len(fake_ray["tuner"].trained) == 18
    assert "continuing after look 4" in capsys.readouterr().out


BAD = [
    (["--max-seeds", "2"], "--max-seeds 2 is below the first look's 3 seeds"),
    (["--max-seeds", "6", "--spending", "haybittle"], "argument --spending: invalid choice: 'haybittle'"),
    (["--max-seeds", "6", "--time-limit", "soon"], "--time-limit 'soon' is not a duration"),
    (["--max-seeds", "6", "--time-limit", "1s"], "the first look alone (12 trials) needs about"),
    (["--max-seeds", "6", "--seeds", "3"], "unrecognized arguments: --seeds 3"),
]


def test_bad_settle_input_is_one_line_with_exit_2_before_anything_starts(tmp_path):
    (tmp_path / "planted.toml").write_text(SWEEP)
    conv_only = SWEEP.replace('layer = ["conv", "scs"]', 'layer = ["conv"]').replace('["relu", "none"]', '["relu"]')
    (tmp_path / "nothing.toml").write_text(conv_only)
    (tmp_path / "stray.toml").write_text(SWEEP + '\n[[claim]]\nname = "SDP helps"\na = { layer = "sdp" }\n'
                                                  'b = { layer = "conv" }\nthreshold = 0.0\n')
    common = ["--dataset", "synthetic", "--storage", str(tmp_path / "runs"), "--store", str(tmp_path / "store")]
    commands = [["settle", str(tmp_path / "planted.toml"), *args, *common] for args, _ in BAD]
    commands += [["settle", str(tmp_path / "nothing.toml"), "--max-seeds", "6", *common],
                 ["settle", str(tmp_path / "stray.toml"), "--max-seeds", "6", *common],
                 ["settle", "optuna-p-rohrer100k", "--max-seeds", "6", *common]]
    messages = [m for _, m in BAD] + ["has no accuracy claim to settle: add [[claim]] tables",
                                      "claim 'SDP helps' of planted: its sides", "is an Optuna search"]
    results, imported_ray, _ = cli_many(commands)
    for (rc, lines), message in zip(results, messages):
        assert rc == 2 and len(lines) == 1 and message in lines[0], (message, lines)
    assert not imported_ray and not (tmp_path / "runs").exists()


def test_settle_plan_prints_the_design_and_what_it_could_decide(tmp_path, capsys):
    (tmp_path / "planted.toml").write_text(SWEEP)
    assert main(["settle", str(tmp_path / "planted.toml"), "--dataset", "synthetic", "--max-seeds", "6", "--plan",
                 "--spread", "0.02", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "2 claim(s), alpha 0.05 two-sided, 0.0250 per claim (Bonferroni); pocock spending; looks at 3, 4, 5, 6" in out
    assert "worst case: 24 trials (4 variants x 6 seeds), 48 trial-epochs" in out
    assert "Conv2d needs ReLU:" in out and "with a per-seed spread of 0.02" in out
    assert not (tmp_path / "runs").exists()  # nothing ran
