"""ResumableASHA: after a resume its rungs hold what the uninterrupted scheduler's held."""
from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from orchestrator.scheduler import ResumableASHA


def make():
    return ResumableASHA(time_attr="training_iteration", metric="test_acc", mode="max", max_t=16,
                         grace_period=1, reduction_factor=4)


def feed(scheduler, trial_id, series):
    trial = SimpleNamespace(trial_id=trial_id)
    if trial_id not in scheduler._trial_info:
        scheduler.on_trial_add(None, trial)
    return [scheduler.on_trial_result(None, trial, {"training_iteration": i, "test_acc": a})
            for i, a in series]


def test_seeded_scheduler_makes_the_same_decisions_as_the_uninterrupted_one():
    before = {"a": [(1, 0.5), (2, 0.6), (3, 0.62), (4, 0.7)], "b": [(1, 0.4), (2, 0.45), (3, 0.5), (4, 0.55)],
              "c": [(1, 0.45), (2, 0.5)]}
    after = {"d": [(1, 0.42), (2, 0.5), (3, 0.5), (4, 0.52)], "e": [(1, 0.3)]}

    straight = make()
    for tid, series in before.items():
        feed(straight, tid, series)
    expected = {tid: feed(straight, tid, s) for tid, s in after.items()}

    fresh = make()  # what Tune hands back on restore: empty rungs
    naive = {tid: feed(fresh, tid, s) for tid, s in after.items()}

    resumed = make()
    resumed.seed_history(before)
    got = {tid: feed(resumed, tid, s) for tid, s in after.items()}
    assert got == expected
    assert TrialScheduler.STOP in expected["e"]
    assert naive != expected  # without seeding the decisions differ (ray#30838)
