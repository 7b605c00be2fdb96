"""The group-sequential design, validated by simulation: at an effect exactly on the threshold a wrong decision
happens at most alpha of the time (normal and heavy-tailed per-seed values), re-checking a fixed t-interval
after every seed exceeds alpha, and a clear effect stops well before the maximum seeds. Also the claims a
sweep file declares ([[claim]]), each mistake one line."""
import math

import pytest

from results.sequential import Design, critical_values, repeated_interval, simulate, spent
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
