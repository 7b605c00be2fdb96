"""The report's summary, built from planted stores with known effects: verdicts, intervals, P(A > B), the
effect against epoch and its trend, the learning curves' state, and time claims only from trials that
had their node to themselves."""
import re

import numpy as np
import pytest

from results.report import summary_lines, write_report
from results.rows import rows_for_trial
from results.store import ParquetStore
from results.table_data import load_table_data, tables_of

TABLE1 = [(layer, act, pool) for layer in ("conv", "scs") for act in ("relu", "none") for pool in ("max", "maxabs")]
EPOCHS = 6


def plant(store, seeds=range(5), dip=0.15, conv_relu_gain=0.08, budget="full", overlap=False, rng_seed=0):
    """table1 trials whose best accuracy carries known effects. The dip grows with training (0 at epoch 1,
    `dip` at the last); every curve still rises at the end. Trials run one after another on one node
    (or, with overlap, two at a time)."""
    rng = np.random.default_rng(rng_seed)
    start = 1_800_000_000.0
    for seed in seeds:
        offset = rng.normal(0, 0.02)
        for i, (layer, act, pool) in enumerate(TABLE1):
            final = 0.60 + offset + rng.normal(0, 0.004)
            final += conv_relu_gain if (layer, act) in (("conv", "relu"), ("scs", "none")) else 0
            seconds = 2.0 if layer == "scs" else 1.0
            results, clock = [], start
            start += EPOCHS * seconds / (2 if overlap else 1)  # with overlap the next trial starts half-way
            for e in range(1, EPOCHS + 1):
                acc = final * (0.5 + 0.5 * e / EPOCHS)
                if act == "relu" and pool == "maxabs":
                    acc -= dip * (e - 1) / (EPOCHS - 1)
                clock += seconds
                jitter = 1 + rng.normal(0, 0.02)
                results.append({"epoch": e, "test_acc": acc, "train_time_s": seconds * 0.9 * jitter,
                                "eval_time_s": (0.4 if layer == "scs" else 0.5) * jitter, "ended_at": clock,
                                "time_this_iter_s": seconds, "node_id": "node-a", "gpu": "cpu"})
            config = dict(arch="rohrer100k", layer=layer, activation=act, pooling=pool, normalization="none",
                          image_dim=32, p_mode="learned", epochs=EPOCHS, seed=seed, dataset="cifar10")
            tid = f"t{seed}_{i}"
            store.write_trial("exp", tid, rows_for_trial("exp", tid, "table1", budget, config, results, "done",
                                                          paper_table="table1"))
    return store


def summary_of(store):
    ((_, _, _, summary, _),) = list(tables_of(load_table_data(store)))
    return summary


def test_the_summary_states_the_planted_effects_with_their_verdicts_and_trends(tmp_path):
    summary = summary_of(plant(ParquetStore(str(tmp_path / "s"))))
    found = {v.claim.name: v for v in summary.verdicts}
    dip = found["ReLU + MaxAbsPool2d trains worst in the Rohrer nets"]
    assert dip.verdict == "supported" and dip.interval.low < 0.15 < dip.interval.high
    assert dip.prob[1:] == (5, 5) and dip.prob[0] > 0.99  # P(ReLU+MaxPool2d > ReLU+MaxAbsPool2d) on a new seed
    assert found["Conv2d needs ReLU"].verdict == "supported"
    assert found["Conv2d needs ReLU"].interval.estimate == pytest.approx(0.08, abs=0.01)
    assert found["SCS without ReLU is as accurate as Conv2d with ReLU"].verdict == "supported"
    slower = found["SCS trains slower than Conv2d"]
    assert slower.verdict == "supported" and slower.shown.estimate == pytest.approx(2.0, rel=0.01)
    assert found["SCS evaluates faster than Conv2d"].verdict == "supported"
    # the dip grows with training: its effect against epoch rises toward the claimed side
    trend = summary.trends[dip.claim.name]
    assert trend.direction == 1 and trend.slope.estimate == pytest.approx(0.15 / (EPOCHS - 1), rel=0.05)
    assert "moving toward the claimed side" in summary.reading(dip)
    series = summary.series[dip.claim.name]
    assert series[series["epoch"] == EPOCHS]["value"].mean() == pytest.approx(dip.interval.estimate)
    assert "still rising at the end (epochs 4-6) in 8 of 8 variants" in summary.curves_text()
    lines = summary_lines(summary)
    (line,) = [x for x in lines if "trains worst" in x]
    assert line.startswith("SUPPORTED: ReLU + MaxAbsPool2d trains worst in the Rohrer nets. ReLU+MaxPool2d minus "
                           "ReLU+MaxAbsPool2d, mean over layers = +0.1")
    assert "P(ReLU+MaxPool2d > ReLU+MaxAbsPool2d) = 1.00 (5 of 5 seeds)" in line
    assert "Effect against epoch: over epochs 4-6 the effect changes by +0.03" in line


def test_a_reduced_budget_decides_nothing_and_the_trend_says_where_the_effect_is_heading(tmp_path):
    summary = summary_of(plant(ParquetStore(str(tmp_path / "s")), budget="quick", dip=-0.10))
    dip = next(v for v in summary.verdicts if "trains worst" in v.claim.name)
    assert dip.verdict == "inconclusive" and "budget shorter than the paper's" in dip.reason
    assert "moving away from the claimed side" in summary.reading(dip)  # the planted dip is reversed


def test_time_claims_are_judged_only_from_trials_that_had_their_node_to_themselves(tmp_path):
    summary = summary_of(plant(ParquetStore(str(tmp_path / "s")), overlap=True))
    for v in summary.verdicts:
        if v.claim.time:
            assert v.verdict == "not judged" and "shared its node with another trial" in v.reason
        else:
            assert v.verdict != "not judged"


def test_the_report_leads_with_the_summary_and_every_section_links(tmp_path):
    store = plant(ParquetStore(str(tmp_path / "s")), budget="quick")
    page = write_report(store, tmp_path / "r").read_text()
    summary_at, table_at = page.index("id='summary'"), page.index("-table'>Table</h4>")
    assert summary_at < table_at  # the summary comes first
    for anchor in re.findall(r"href='#([^']+)'", page):
        assert f"id='{anchor}'" in page, anchor  # every contents entry points at a section
    assert page.count("<figcaption>") == page.count("<figure") > 5  # every figure has its caption
    for line in summary_lines(summary_of(store)):
        claim = line.split(". ")[0].split(": ", 1)[1]
        assert claim in page
    assert "Final Acc." in page and "selected on the test set" in page
