"""The group-sequential design, validated by simulation: at an effect exactly on the threshold a wrong decision
happens at most alpha of the time (normal and heavy-tailed per-seed values), re-checking a fixed t-interval
after every seed exceeds alpha, and a clear effect stops well before the maximum seeds; with futility (non-
binding) the error rate stays within alpha, most claims sitting on their threshold stop early, and a clear
effect is decided as often as without it. Also the claims a sweep file declares ([[claim]]), each mistake one
line."""
import math

import pytest

from results.sequential import (
    FUTILITY,
    Design,
    conditional_power,
    critical_values,
    futility_applies,
    repeated_interval,
    simulate,
    spent,
)
from search_spaces import SpecError

REPS = 20_000
SE = math.sqrt(0.05 * 0.95 / REPS)   # the simulation's standard error at a 5 % rate


@pytest.mark.parametrize("spending", ["pocock", "obrien-fleming"])
@pytest.mark.parametrize("distribution", ["normal", "t3"])
def test_at_the_threshold_the_design_errs_at_most_alpha_and_naive_rechecking_errs_more(spending, distribution):
    design = Design(first=3, step=1, max_seeds=10, spending=spending, alpha=0.05, claims=1).with_critical_values()
    r = simulate(design, effect=0.0, distribution=distribution, reps=REPS, seed=11)
    assert r["decided"] <= 0.05 + 3 * SE, r                      # every decision here is wrong
    assert r["naive_decided"] > 0.05 + 10 * SE, r                 # a 95 % t-interval after every seed
    if distribution == "normal":
        assert r["decided"] > 0.05 - 4 * SE, r                    # and it spends what it may, not far less


def test_bonferroni_splits_alpha_over_a_tables_claims():
    design = Design(3, 1, 10, "pocock", 0.05, claims=3).with_critical_values()
    assert design.alpha_per_claim == pytest.approx(0.05 / 3)
    r = simulate(design, 0.0, reps=REPS, seed=12)
    assert r["decided"] <= 0.05 / 3 + 3 * math.sqrt(0.0167 * 0.983 / REPS)


def test_a_clear_effect_stops_well_before_the_maximum_seeds():
    design = Design(3, 1, 10, "pocock", 0.05, claims=1).with_critical_values()
    r = simulate(design, effect=2.0, reps=REPS, seed=13)  # two per-seed standard deviations from the threshold
    assert r["decided"] > 0.99 and r["mean_seeds"] < 6.0, r
    late = Design(3, 1, 10, "obrien-fleming", 0.05, claims=1).with_critical_values()
    assert simulate(late, 2.0, reps=REPS, seed=13)["mean_seeds"] > r["mean_seeds"]  # O'Brien-Fleming waits


def test_critical_values_are_the_t_statistics_own_and_fixed_for_a_design():
    looks = [3, 4, 5, 6]
    first = critical_values(looks, 0.05, "pocock")
    assert first == critical_values(looks, 0.05, "pocock")  # seeded and cached: a design's values never move
    assert all(a > b for a, b in zip(first, first[1:]))  # Pocock spending: stricter at the early looks
    # the z-to-t shortcut would use the normal boundary, far below what 3 seeds' t statistic needs
    assert first[0] > 4.0
    assert spent(1.0, 0.05, "pocock") == pytest.approx(0.05) and spent(1.0, 0.05, "obrien-fleming") == \
        pytest.approx(0.05)
    assert spent(0.3, 0.05, "obrien-fleming") < spent(0.3, 0.05, "pocock")


def test_the_repeated_interval_is_mean_plus_or_minus_c_times_the_standard_error():
    interval = repeated_interval([0.1, 0.2, 0.3], 4.0)
    assert interval.estimate == pytest.approx(0.2) and interval.n == 3
    assert interval.high - interval.estimate == pytest.approx(4.0 * 0.1 / math.sqrt(3))
    assert not repeated_interval([0.2], 4.0).has_interval


FUTILE_REPS = 6_000   # with futility each run simulates its own continuations: fewer runs, the same checks
FUTILE_SE = math.sqrt(0.05 * 0.95 / FUTILE_REPS)


@pytest.mark.parametrize("distribution", ["normal", "t3"])
def test_futility_keeps_the_error_rate_within_alpha_and_stops_most_claims_on_their_threshold(distribution):
    """Non-binding futility gives up chances to decide, never adds any: at an effect on the threshold the
    wrong decisions stay within alpha; and since such a claim cannot be decided, most of them stop for
    futility before the maximum seeds (where without futility all of them ran to it)."""
    design = Design(3, 1, 10, "pocock", 0.05, claims=1).with_critical_values()
    with_futility = simulate(design, 0.0, distribution, reps=FUTILE_REPS, seed=21, futility=FUTILITY)
    assert with_futility["decided"] <= 0.05 + 3 * FUTILE_SE, with_futility
    assert with_futility["futile"] > 0.5, with_futility
    without = simulate(design, 0.0, distribution, reps=FUTILE_REPS, seed=21)
    assert with_futility["mean_seeds"] < without["mean_seeds"] - 2, (with_futility, without)


def test_futility_costs_a_clear_effect_at_most_a_point_of_its_decisions():
    for claims, distribution, effect in ((1, "normal", 2.0), (3, "normal", 2.0), (3, "t3", 2.0), (1, "normal", 1.0)):
        design = Design(3, 1, 10, "pocock", 0.05, claims=claims).with_critical_values()
        with_futility = simulate(design, effect, distribution, reps=FUTILE_REPS, seed=22, futility=FUTILITY)
        without = simulate(design, effect, distribution, reps=FUTILE_REPS, seed=22)
        if effect == 2.0:  # two per-seed standard deviations from the threshold
            assert with_futility["decided"] >= without["decided"] - 0.01, (claims, distribution, with_futility, without)
        assert with_futility["decided"] <= without["decided"]  # futility only ever takes decisions away


def test_conditional_power_is_high_for_a_clear_effect_and_low_on_the_threshold():
    design = Design(3, 1, 10, "pocock", 0.05, claims=1).with_critical_values()
    clear = conditional_power([0.9, 1.1, 1.0, 1.2], design, 1, (0.0,))
    on_it = conditional_power([0.3, -0.4, 0.1, -0.05, 0.02, -0.1], design, 3, (0.0,))
    assert clear > 0.9 and on_it < FUTILITY, (clear, on_it)
    assert conditional_power([0.9, 1.1, 1.0], design, 7, (0.0,)) == 1.0  # the last look: nothing after it
    assert not futility_applies(design, 0) and futility_applies(design, 1) and not futility_applies(design, 7)
    assert conditional_power([0.3, -0.4, 0.1, -0.05, 0.02, -0.1], design, 3, (0.0,)) == on_it  # seeded
    # a 'within' claim must clear both ends of its band
    band = conditional_power([0.0, 0.01, -0.01, 0.005], design, 1, (-1.0, 1.0))
    assert band > 0.9


def test_the_critical_values_come_from_the_same_draws_computed_in_blocks(monkeypatch):
    """The simulation draws its null paths a block at a time (a 100-seed design held 160 MB at once): the
    values are the same as from one (paths, seeds) draw."""
    import numpy as np

    import results.sequential as sequential

    monkeypatch.setattr(sequential, "BLOCK_VALUES", 6 * 3_000)  # blocks of 3,000 paths
    looks, alpha, paths, seed = [3, 4, 5, 6], 0.05, 20_000, 5
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((paths, looks[-1]))
    alive, expected, before = np.ones(paths, dtype=bool), [], 0.0
    for n in looks:
        t = np.abs(x[:, :n].mean(axis=1)) / (x[:, :n].std(axis=1, ddof=1) / math.sqrt(n))
        target = spent(n / looks[-1], alpha, "pocock") - before
        before += target
        c = float(np.sort(t[alive])[::-1][int(round(target * paths)) - 1])
        expected.append(c)
        alive &= t < c
    assert critical_values(looks, alpha, "pocock", paths=paths, seed=seed) == expected


CLAIM = """
name = "mine"
epochs = 2

[fixed]
arch = "rohrer25k"

[[grid]]
layer = ["conv", "scs"]

[[claim]]
name = "SCS beats Conv2d"
a = { layer = "scs" }
b = { layer = "conv" }
threshold = 0.02
"""


def test_a_sweep_file_declares_its_own_claims_and_each_mistake_is_one_line(tmp_path):
    from search_spaces import load_sweep_file
    from search_spaces.claims import ClaimSpec
    from search_spaces.sweep_file import sweep_file_text

    (tmp_path / "mine.toml").write_text(CLAIM)
    _, (experiment,), _ = load_sweep_file(tmp_path / "mine.toml")
    (claim,) = experiment.claims
    assert claim == ClaimSpec("SCS beats Conv2d", {"layer": "scs"}, {"layer": "conv"}, threshold=0.02)
    assert claim.applies(experiment.trial_rows()) and claim.effect_text == "best SCS minus best Conv2d"
    (tmp_path / "again.toml").write_text(sweep_file_text("mine", [experiment]))
    assert load_sweep_file(tmp_path / "again.toml")[1][0].claims == (claim,)  # written back as it was read
    for edit, says in ((("threshold = 0.02", "threshold = 0.02\nsid = \"above\""), "unknown key 'sid' in [[claim]]"),
                       (('name = "SCS beats Conv2d"\n', ""), "[[claim]] needs 'name'"),
                       (("threshold = 0.02", "threshold = 0.02\nside = \"sideways\""), "side 'sideways'"),
                       (('a = { layer = "scs" }', 'a = { lyr = "scs" }'), "'a' filters on 'lyr'"),
                       (("threshold = 0.02", "threshold = 0.02\nmetric = \"loss\""), "metric 'loss'"),
                       (("threshold = 0.02", "threshold = 0.02\nstatistic = \"mean_within\""), "needs 'within'"),
                       (("threshold = 0.02", "threshold = \"big\""), "threshold must be a number"),
                       ((CLAIM[CLAIM.index("[[claim]]"):], CLAIM[CLAIM.index("[[claim]]"):] * 2),
                        "two [[claim]]s are named 'SCS beats Conv2d'")):
        (tmp_path / "bad.toml").write_text(CLAIM.replace(*edit))
        with pytest.raises(SpecError, match="bad.toml") as caught:
            load_sweep_file(tmp_path / "bad.toml")
        assert says in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
