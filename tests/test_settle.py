"""`scs-sweep settle`: bad input is one line before anything starts; looks add seeds only to the variants open
claims compare; decisions, the path and the seeds spent are recorded; a killed settle continues where it stopped
and never trains a (config, seed) twice. Training is replaced by planted results (the loop is what is tested
here; tests/test_sweeps.py runs real trials through Ray)."""
import json

import numpy as np
import pytest
from support.cli import cli_many

from orchestrator.cli import main
from results.rows import rows_for_trial
from results.store import ParquetStore

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

    def __init__(self, store, stop_at_look=None, interrupt_at_look=None):
        self.store, self.stop_at_look, self.trained = store, stop_at_look, []
        self.interrupt_at_look = interrupt_at_look  # Tune catches Ctrl+C: half the look trains, then it returns

    def execute(self, sweep, resume=False, parts=None):
        from orchestrator import stopping

        for part in parts:
            if self.stop_at_look and part.part.endswith(f"look{self.stop_at_look}"):
                raise KeyboardInterrupt
            trials = part.trials
            if self.interrupt_at_look and part.part.endswith(f"look{self.interrupt_at_look}"):
                trials = trials[:len(trials) // 2]
                stopping.interrupted()  # what tuner.execute does when Tune returns with trials left
            for i, trial in enumerate(trials):
                c = trial["config"]
                noise = np.random.default_rng(c["seed"] * 7 + i).normal(0, 0.004)
                acc = PLANTED[(c["layer"], c["activation"])] + 0.02 * np.sin(c["seed"]) + noise
                # one id per trial, as Tune keeps it when a part is resumed with some of its trials done
                tid = f"{part.part.replace('-', '')}_{c['layer']}{c['activation']}{c['seed']}"
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
    """Ray left out: starting a sweep writes its files, connecting does nothing, and tuner.execute trains
    planted results (the FakeTuner in made["tuner"])."""
    import orchestrator.settle as settle
    import orchestrator.startup as startup
    import orchestrator.tuner as tuner
    from results.store import get_store

    made = {}

    def start_sweep(sweep, text, options, address=""):
        get_store(sweep.store).write_sweep(sweep.name, text)
        made["tuner"] = made.get("tuner") or FakeTuner(get_store(sweep.store))

    monkeypatch.setattr(startup, "start_sweep", start_sweep)
    monkeypatch.setattr(startup, "connect", lambda address="": None)
    monkeypatch.setattr(tuner, "execute", lambda *a, **kw: made["tuner"].execute(*a, **kw))
    monkeypatch.setattr(settle, "_slots", lambda parts, fallback: 2)
    return made


def _settle(tmp_path, *extra, futility: bool = False):
    """The planted settle; without futility unless asked (the looks then run as the design alone says)."""
    (tmp_path / "planted.toml").write_text(SWEEP)
    if "--dataset" not in extra:
        extra = ("--dataset", "synthetic", *extra)
    return main(["settle", str(tmp_path / "planted.toml"), "--no-evaluate", "--max-seeds", "6", "--first", "3",
                 "--storage", str(tmp_path / "runs"), "--store", str(tmp_path / "store"),
                 *(() if futility else ("--no-futility",)), *extra])


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
    assert "Conv2d needs ReLU: SUPPORTED, decided after 3 seeds (look 1 of 4)" in out
    assert "18 trials trained of the 24 a fixed design at 6 seeds needs" in out
    # the record is in the store, for the report; status shows the design and where each claim stands
    assert ParquetStore(str(tmp_path / "store")).read_settle("planted")["looks_done"] == 4
    assert main(["status", "planted", "--storage", str(tmp_path / "runs")]) == 0
    status = capsys.readouterr().out
    assert "a settle (pocock spending, alpha 0.05, first 3 seeds, at most 6); 4 look(s) taken" in status
    assert ("planted: Conv2d needs ReLU: at this budget NOT JUDGED (synthetic data, not CIFAR-10), best Conv2d/ReLU "
            "minus best Conv2d/None = +0.1996 [+0.1661, +0.2331]; the settle: supported, decided after 3 seeds (look 1 "
            "of 4)") in status


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
    from orchestrator.plan import SweepPlan

    sweep = SweepPlan.load(tmp_path / "runs" / "planted" / "sweep.json")
    assert settle.continue_settle(sweep) == 0
    after = json.loads(path.read_text())
    assert after["looks_done"] == 4
    for name, claim in before["claims"]["planted"].items():
        assert after["claims"]["planted"][name]["path"][:2] == claim["path"]  # the looks taken do not change
    trained = fake_ray["tuner"].trained
    assert len(trained) == len(set(trained)) == 18  # nothing trained twice across the kill
    # running the same settle again finds it done: no look left, nothing trained
    assert _settle(tmp_path) == 0 and len(fake_ray["tuner"].trained) == 18
    assert "continuing after look 4" in capsys.readouterr().out


def test_a_settle_interrupted_inside_a_look_judges_nothing_until_resume_finishes_the_look(tmp_path, fake_ray,
                                                                                          capsys):
    """Tune returns on Ctrl+C with half the look trained: the look is not judged on those (the settle went on
    and judged it), exit 130, and resume trains the rest of the look and judges it whole."""
    import orchestrator.settle as settle
    from orchestrator import stopping
    from orchestrator.plan import SweepPlan

    fake_ray["tuner"] = FakeTuner(ParquetStore(str(tmp_path / "store")), interrupt_at_look=2)
    try:
        assert _settle(tmp_path) == 130
    finally:
        stopping.clear()
    out = capsys.readouterr().out
    assert "settle planted: interrupted in look 2; `scs-sweep resume planted` continues it" in out
    record = json.loads((tmp_path / "runs" / "planted" / "settle.json").read_text())
    scs = record["claims"]["planted"]["SCS without ReLU is as accurate as Conv2d with ReLU"]
    assert record["looks_done"] == 1 and [p["seeds"] for p in scs["path"]] == [3]  # look 2 not judged
    assert len(fake_ray["tuner"].trained) == 13  # 12 at look 1, then half of look 2's two trials
    fake_ray["tuner"].interrupt_at_look = None
    sweep = SweepPlan.load(tmp_path / "runs" / "planted" / "sweep.json")
    assert settle.continue_settle(sweep) == 0
    record = json.loads((tmp_path / "runs" / "planted" / "settle.json").read_text())
    scs = record["claims"]["planted"]["SCS without ReLU is as accurate as Conv2d with ReLU"]
    assert record["looks_done"] == 4 and [p["seeds"] for p in scs["path"]] == [3, 4, 5, 6]
    trained = fake_ray["tuner"].trained
    assert len(trained) == len(set(trained)) == 18  # the half-trained look finished, nothing twice


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
    assert "- Conv2d needs ReLU: per-seed spread 0.0200 (from --spread); the last look decides an effect" in out
    assert "at its threshold (> 0.03):" in out and "at the paper's effect (+0.073):" in out
    assert "seeds on average, decided in" in out and "stopped for futility in" in out
    assert "expected trials for planted (claims drawn independently):" in out and "worst case 24" in out
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_a_settled_sweep_gets_one_verdict_and_one_interval_per_claim_from_tables_report_and_status(
        tmp_path, fake_ray, capsys):
    """`tables --compare-paper` judged a settled sweep with plain t-intervals over the seeds settle chose to add
    (too narrow: optional stopping), while `report` used the settle's repeated intervals. Now tables, report and
    status read one pipeline: the same verdict and the same interval for every claim, the settle's. On
    CIFAR-10 rows (the data is only named: training is planted), so the claims are judged."""
    import html
    import re

    from support.data import write_cifar_bin

    write_cifar_bin(tmp_path / "cifar")
    assert _settle(tmp_path, "--dataset", "cifar10", "--data", str(tmp_path / "cifar")) == 0
    record = json.loads((tmp_path / "runs" / "planted" / "settle.json").read_text())["claims"]["planted"]
    capsys.readouterr()
    store = ["--store", str(tmp_path / "store")]
    assert main(["tables", "--compare-paper", *store]) == 0
    tables = capsys.readouterr().out
    assert main(["report", "--out", str(tmp_path / "report"), *store]) == 0
    page = html.unescape((tmp_path / "report" / "report.html").read_text())
    assert main(["status", "planted", "--storage", str(tmp_path / "runs")]) == 0
    status = capsys.readouterr().out
    for name, claim in record.items():
        at = next(p for p in claim["path"] if p["look"] == claim.get("look", claim["path"][-1]["look"]))
        interval = f"[{at['low']:+.4f}, {at['high']:+.4f}]"  # the settle's repeated interval
        verdict = claim.get("decided", "undecided")
        from_tables = re.search(rf"- planted: {re.escape(name)} -- .*? = (\S+ \[\S+, \S+\]) .*? At this budget: "
                                rf"([A-Z]+)", tables)
        from_report = re.search(rf"<li><b>{re.escape(name)}</b><br><span class='badge [^']+'>at this budget: "
                                rf"([a-z ]+)</span>.*?<span class='detail'>[^<]*? = (\S+ \[\S+, \S+\]) over", page)
        from_status = re.search(rf"planted: {re.escape(name)}: at this budget ([A-Z ]+), .*? = (\S+ \[\S+, \S+\]);",
                                status)
        assert from_tables and from_report and from_status, name
        assert from_tables.group(1).endswith(interval) and from_report.group(2).endswith(interval)
        assert from_status.group(2).endswith(interval)
        assert from_tables.group(2).lower() == from_report.group(1) == from_status.group(1).lower() == verdict
    assert "decided after 3 seeds (look 1 of 4)" in tables and "undecided at 6 seeds" in tables


def test_a_corrupt_settle_record_or_sweep_file_in_the_store_is_skipped_with_a_warning(tmp_path, fake_ray, capsys):
    """Both were skipped without a word (a settled sweep then judged with plain intervals, its own claims
    dropped); now each is one warning line on stderr, and the tables still print."""
    assert _settle(tmp_path) == 0
    store = tmp_path / "store"
    (store / "_settle" / "planted.json").write_text("{not json")
    (store / "_sweeps" / "planted.toml").write_text("epochs = [unclosed")
    capsys.readouterr()
    assert main(["tables", "--compare-paper", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert "the sweep file kept for planted cannot be read" in err and "its own claims are left out" in err
    assert "the settle record of planted cannot be read" in err and "judged with plain intervals" in err
    assert "Conv2d needs ReLU" in out


def test_futility_stops_a_claim_that_cannot_be_decided_and_its_variants_get_no_more_seeds(tmp_path, fake_ray,
                                                                                          capsys):
    """The planted SCS/None claim sits 0.001 from its threshold: without futility it ran to the sixth seed
    (18 trials). Its conditional power at the second look is far below the bound, so it stops there, saying
    why and the seeds it would take; its two variants get no more seeds, and every place says which claim
    was decided and which stopped."""
    from results.store import get_store

    write_cifar = __import__("support.data", fromlist=["write_cifar_bin"]).write_cifar_bin
    write_cifar(tmp_path / "cifar")
    assert _settle(tmp_path, "--dataset", "cifar10", "--data", str(tmp_path / "cifar"), futility=True) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "runs" / "planted" / "settle.json").read_text())
    scs = record["claims"]["planted"]["SCS without ReLU is as accurate as Conv2d with ReLU"]
    assert scs["look"] == 2 and scs["seeds"] == 4 and scs["path"][-1]["power"] < 0.05
    assert scs["futile"].startswith("cannot be decided within 6 seeds (a ") and "seeds would decide it" in \
        scs["futile"] or "too close to its threshold" in scs["futile"]
    assert len(fake_ray["tuner"].trained) == 14  # 12 at the first look, then one seed of the two variants
    assert "stopped for futility after 4 seeds: cannot be decided within 6 seeds" in out
    assert "14 trials trained of the 24 a fixed design at 6 seeds needs" in out
    counts = "the settle decided 1 of 2 claim(s), stopped 1 for futility (more seeds would not decide them)"
    assert main(["tables", "--compare-paper", "--store", str(tmp_path / "store")]) == 0
    tables = capsys.readouterr().out
    assert counts in tables and "UNDECIDED (stopped for futility after 4 seeds: cannot be decided" in tables
    assert main(["status", "planted", "--storage", str(tmp_path / "runs")]) == 0
    assert "the settle: stopped for futility after 4 seeds" in capsys.readouterr().out
    from results.report import write_report

    page = write_report(get_store(str(tmp_path / "store")), tmp_path / "report").read_text()
    assert counts in page and "stopped for futility after 4 seeds" in page


def test_a_maximum_no_sweep_could_train_is_one_line_at_once(tmp_path):
    """--max-seeds 100000 planned 800,000 trials for two minutes before anything was said."""
    (tmp_path / "planted.toml").write_text(SWEEP)
    results, imported_ray, _ = cli_many([["settle", str(tmp_path / "planted.toml"), "--dataset", "synthetic",
                                          "--max-seeds", "100000", "--storage", str(tmp_path / "runs")]])
    ((rc, lines),) = results
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("scs-sweep settle: error: --max-seeds 100000: at most 100")
    assert not imported_ray


def test_the_plan_measures_a_closed_claim_on_the_seeds_it_was_judged_on(tmp_path, fake_ray, capsys):
    """Seeds trained after a claim closed (for other claims, or by hand) can hold its variants, or some of them
    (a mean over layers then comes from fewer layers): the plan's measured spread mixed them in. Here Conv2d
    needs ReLU was decided on 3 seeds; Conv2d/ReLU has seed 4 for the other claim and a Conv2d/None trial at
    seed 4 far off its planted value is in the store: the plan still measures the claim on its 3 seeds."""
    assert _settle(tmp_path) == 0
    store = ParquetStore(str(tmp_path / "store"))
    trials = store.read_table("trials", "planted").to_pandas()
    seed0 = trials[(trials["layer"] == "conv") & (trials["activation"] == "none") & (trials["seed"] == 0)].iloc[0]
    config = dict(json.loads(seed0["config_json"]), seed=4)
    results = [{"epoch": e, "test_acc": 0.1 * e, "train_time_s": 1.0, "eval_time_s": 0.1, "ended_at": 1.9e9 + e,
                "time_this_iter_s": 1.0} for e in (1, 2)]
    store.write_trial("planted", "later_00000", rows_for_trial("planted", "later_00000", seed0["group"],
                                                               seed0["budget"], config, results, "done",
                                                               paper_table="table1"))
    capsys.readouterr()
    assert main(["settle", str(tmp_path / "planted.toml"), "--dataset", "synthetic", "--max-seeds", "6",
                 "--first", "3", "--plan", "--name", "planted", "--storage", str(tmp_path / "runs"),
                 "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "- Conv2d needs ReLU: per-seed spread" in out and "(from the 3 seeds measured)" in out
    assert "as measured so far (+0.200 over 3 seeds)" in out
