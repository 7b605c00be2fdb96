"""Verdicts on the paper's claims and factor effects, from planted trials with known effects."""
import math

import numpy as np
import pandas as pd
import pytest

from results.claims import DELTA, check_claims
from results.stats import effects, mean_interval

TABLE1 = [(layer, act, pool) for layer in ("conv", "scs") for act in ("relu", "none") for pool in ("max", "maxabs")]


def planted(seeds, dip=0.15, conv_relu_gain=0.08, scs_gap=0.0, noise=0.004, seed_sd=0.02, epochs=800,
            dataset="cifar10", n_train=0, scs_time=2.0, arch="rohrer100k", variants=TABLE1, rng_seed=0):
    """Trials of one table: known effects, a per-seed offset (shared initial weights) and a little noise."""
    rng = np.random.default_rng(rng_seed)
    # as the plan labels it (orchestrator/plan.py): the paper's budget is CIFAR-10, all images, 800 epochs
    budget = "full" if dataset == "cifar10" and not n_train and epochs >= 800 else "reduced"
    rows = []
    for seed in seeds:
        offset = rng.normal(0, seed_sd)
        for layer, act, pool in variants:
            acc = 0.70 + offset + rng.normal(0, noise)
            if layer == "conv" and act == "relu":
                acc += conv_relu_gain
            if layer == "scs" and act == "none":
                acc += conv_relu_gain + scs_gap
            if act == "relu" and pool == "maxabs":
                acc -= dip
            rows.append(dict(arch=arch, layer=layer, activation=act, pooling=pool, normalization="none",
                             image_dim=32, p_mode="learned", p_value=None, seed=seed, epochs=epochs,
                             epochs_done=epochs, dataset=dataset, n_train=n_train, budget=budget,
                             status="done", val_acc=acc,
                             train_time_s=(scs_time if layer == "scs" else 1.0) * (1 + rng.normal(0, 0.02)),
                             eval_time_s=(0.8 if layer == "scs" else 1.0) * (1 + rng.normal(0, 0.02))))
    return pd.DataFrame(rows)


def verdicts(trials, table="table1"):
    return {v.claim.name: v for v in check_claims(table, trials)}


DIP = "With ReLU, MaxAbsPool2d trains worse than MaxPool2d in the Rohrer nets"


def test_one_seed_is_undecided_whatever_the_numbers():
    found = verdicts(planted([0]))
    assert len(found) == 5
    for v in found.values():
        assert v.budget_verdict == "undecided" and "one seed" in v.budget_reason and not v.interval.has_interval


def test_planted_effects_are_supported_over_five_seeds_at_the_papers_budget():
    found = verdicts(planted(range(5)))
    for name in (DIP, "Conv2d needs ReLU", "SCS without ReLU is as accurate as Conv2d with ReLU",
                 "SCS trains slower than Conv2d", "SCS evaluates faster than Conv2d"):
        assert (found[name].budget_verdict, found[name].paper_verdict) == ("supported", "supported"), name
    dip = found[DIP].interval
    assert dip.low < 0.15 < dip.high  # the interval holds the planted dip
    assert found["SCS trains slower than Conv2d"].shown.estimate == pytest.approx(2.0, rel=0.05)


def test_planted_opposites_are_contradicted():
    found = verdicts(planted(range(5), dip=0.0, conv_relu_gain=0.0, scs_gap=-0.10, scs_time=0.5))
    for claim in (DIP, "Conv2d needs ReLU", "SCS without ReLU is as accurate as Conv2d with ReLU",
                  "SCS trains slower than Conv2d"):
        assert found[claim].budget_verdict == found[claim].paper_verdict == "contradicted", (claim, found[claim].line())
    reversed_dip = verdicts(planted(range(5), dip=-0.1))[DIP]
    assert reversed_dip.paper_verdict == "contradicted" and reversed_dip.interval.high < 0


def test_an_effect_near_the_threshold_is_undecided_and_says_how_many_seeds_would_decide_it_at_this_budget():
    found = verdicts(planted(range(3), conv_relu_gain=DELTA + 0.006, noise=0.01, rng_seed=3))
    v = found["Conv2d needs ReLU"]
    assert v.budget_verdict == v.paper_verdict == "undecided" and v.interval.low < DELTA < v.interval.high
    assert "spans the threshold" in v.budget_reason
    assert "seeds would decide it at this budget (80 % chance)" in v.budget_reason


def test_a_reduced_budget_gets_two_verdicts_in_their_own_words():
    """At a reduced budget a claim is judged at that budget, and the paper's claim is not tested: one word
    never means both."""
    reduced = verdicts(planted(range(5), dip=-0.1, epochs=8, n_train=5000))
    v = reduced[DIP]
    assert v.budget_verdict == "contradicted" and "the whole interval is on the other side" in v.budget_reason
    assert v.paper_verdict == "not tested at the paper's budget" and "8 of 800 epochs" in v.paper_reason
    held = verdicts(planted(range(5), epochs=8, n_train=5000))["Conv2d needs ReLU"]
    assert (held.budget_verdict, held.paper_verdict) == ("supported", "not tested at the paper's budget")
    assert "At this budget: SUPPORTED" in held.line() and "The paper's claim: NOT TESTED" in held.line()
    slower = verdicts(planted(range(5), epochs=8))["SCS trains slower than Conv2d"]
    assert slower.paper_verdict == "supported"  # seconds per epoch do not depend on the epochs trained
    synthetic = verdicts(planted(range(5), dataset="synthetic"))
    v = synthetic["Conv2d needs ReLU"]
    assert v.budget_verdict == v.paper_verdict == "not judged" and "not CIFAR-10" in v.budget_reason
    assert synthetic["SCS trains slower than Conv2d"].budget_verdict == "supported"  # times do not depend on the data


def test_no_spread_across_seeds_gives_no_interval_and_pruned_variants_are_named():
    same = planted(range(3), seed_sd=0.0, noise=0.0)
    v = verdicts(same)["Conv2d needs ReLU"]
    assert v.budget_verdict == "undecided" and "no spread" in v.budget_reason and not v.interval.has_interval
    pruned = planted(range(3))
    pruned.loc[pruned["layer"] == "conv", "status"] = "pruned"
    v = verdicts(pruned)["Conv2d needs ReLU"]
    assert v.budget_verdict == "undecided" and "12 pruned, failed or unfinished" in v.budget_reason
    assert "--no-prune" in v.budget_reason


def test_resnet18_claims_no_dip_and_sdp_needs_no_activation():
    resnet = planted(range(5), dip=0.0, arch="resnet18")
    v = verdicts(resnet, "table2")["ResNet18 shows no ReLU + MaxAbsPool2d dip"]
    assert v.budget_verdict == "supported" and v.threshold == f"within +/-{DELTA:g}"
    sdp = [("sdp", a, p) for a in ("relu", "none") for p in ("max", "maxabs")]
    found = verdicts(planted(range(5), variants=sdp, dip=0.0), "table3")
    assert found["SharpenedSDP needs no activation"].budget_verdict == "supported"


def test_the_papers_own_effect_is_the_same_statistic_on_its_table():
    """Table 1 of the paper: SCS/None 0.7870 - Conv2d/ReLU 0.8032 = -0.016; Conv2d ReLU 0.8032 - None 0.7301 =
    +0.073; the dip (0.8032 - 0.6496 + 0.8026 - 0.7770) / 2 = +0.090; train time SCS / Conv2d: 33.5 / 22.1."""
    found = verdicts(planted(range(5)))
    assert found["SCS without ReLU is as accurate as Conv2d with ReLU"].paper_effect == pytest.approx(-0.0162)
    assert found["Conv2d needs ReLU"].paper_effect == pytest.approx(0.0731)
    assert found[DIP].paper_effect == pytest.approx(0.0896)
    assert math.exp(found["SCS trains slower than Conv2d"].paper_effect) == pytest.approx(33.52 / 22.13, rel=0.01)
    relu = found["Conv2d needs ReLU"]
    assert relu.paper_inside == (relu.interval.low <= 0.0731 <= relu.interval.high)
    text = found[DIP].paper_effect_text()
    assert text.startswith("the paper's: +0.090 (outside our interval") and "no spread" in text


def test_every_claim_name_is_in_the_papers_wording_document():
    """docs/paper_facts.md lists the claims this project judges under the names the report prints."""
    from pathlib import Path

    from results.claims import BUILTIN

    facts = (Path(__file__).resolve().parent.parent / "docs" / "paper_facts.md").read_text()
    section = facts[facts.index("## The claims this project judges"):]
    for spec in BUILTIN:
        assert f"**{spec.name}**" in section, spec.name


def test_factor_effects_recover_planted_main_effects_and_the_interaction():
    found = {e.name: e.interval for e in effects(planted(range(4), dip=0.12, conv_relu_gain=0.05, scs_gap=0.0))}
    interaction = found["ReLU x MaxAbsPool2d"]
    assert interaction.low < -0.12 < interaction.high and interaction.high < 0
    assert found["MaxAbsPool2d - MaxPool2d"].estimate == pytest.approx(-0.06, abs=0.01)  # -0.12 under ReLU only
    assert found["MaxAbsPool2d - MaxPool2d where activation = ReLU"].estimate == pytest.approx(-0.12, abs=0.01)
    layer = found["SCS - Conv2d"]
    assert layer.low < 0 < layer.high  # SCS/None gets what Conv2d/ReLU gets: no main effect of the layer
    assert mean_interval([0.5]).has_interval is False
    one_seed = {e.name: e.interval for e in effects(planted([0]))}
    assert not any(i.has_interval for i in one_seed.values())  # one seed: no interval
