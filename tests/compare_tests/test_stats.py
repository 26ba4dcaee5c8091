"""The comparison's statistics against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from greedylr.comparison import _stats
from greedylr.comparison._analysis import overall_rate
from greedylr.comparison._plan import Plan
from greedylr.comparison._plan import parse_protocol
from greedylr.comparison._plan import parse_schedules
from greedylr.comparison._protocol import first_round_trials
from greedylr.comparison._protocol import within_budget


def test_bootstrap_ci_of_constant_and_single_values_is_the_value() -> None:
    assert _stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert _stats.bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in _stats.bootstrap_ci([math.nan]))


def test_bootstrap_ci_holds_the_mean_and_stays_within_the_data() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    low, high = _stats.bootstrap_ci(values, seed=3)
    assert 1.0 <= low < 2.5 < high <= 4.0
    assert _stats.bootstrap_ci(values, seed=3) == (low, high)  # seeded: the same CI


def test_difference_ci_of_constant_samples_is_the_difference() -> None:
    assert _stats.difference_ci([1.0, 1.0], [3.0, 3.0, 3.0]) == (-2.0, -2.0)


def test_strict_outcome_needs_a_ci_excluding_zero_and_a_gap_above_the_tolerance() -> None:
    better, worse = [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]
    win = _stats.strict_outcome(better, worse, mode="min", tolerance=0.5)
    assert (win.difference, win.low, win.high, win.outcome) == (-1.0, -1.0, -1.0, "win")
    assert _stats.strict_outcome(better, worse, mode="max", tolerance=0.5).outcome == "loss"
    assert _stats.strict_outcome(better, worse, mode="min", tolerance=1.5).outcome == "tie"
    # Overlapping samples: the CI of the difference holds 0, whatever the tolerance.
    assert _stats.strict_outcome([1, 2, 3], [1, 2, 3], mode="min", tolerance=0).outcome == "tie"
    with pytest.raises(ValueError, match="`mode` must be 'min' or 'max'"):
        _stats.strict_outcome(better, worse, mode="lower", tolerance=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`tolerance` must be >= 0"):
        _stats.strict_outcome(better, worse, mode="min", tolerance=-1)


def test_lenient_outcomes_follow_the_papers_tie_rule() -> None:
    greedy = [1.0, 1.0, 1.0, 10.0, 20.0, math.nan, 1.0]
    baseline = [1.05, 1.5, 0.5, 10.09, 20.15, 1.0, math.inf]
    # |0.05| < 0.1 tie; -0.5 win; +0.5 loss; |0.09| < 0.1 tie; |0.15| < 1 % of 20.15 tie;
    # GreedyLR diverged: loss; the baseline diverged: win.
    expected = ["tie", "win", "loss", "tie", "tie", "loss", "win"]
    assert _stats.lenient_outcomes(greedy, baseline) == expected
    with pytest.raises(ValueError, match="same length"):
        _stats.lenient_outcomes([1.0], [1.0, 2.0])


def test_as_good_or_better_reproduces_the_papers_rate() -> None:
    outcomes = ["win"] * 48 + ["tie"] * 122 + ["loss"] * 26  # 196 pairs, 170 not worse
    assert _stats.as_good_or_better(outcomes) == pytest.approx(0.867, abs=5e-4)
    assert math.isnan(_stats.as_good_or_better([]))


def test_kendall_tau_of_known_rankings() -> None:
    assert _stats.rung_kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert _stats.rung_kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # One discordant pair of 6: (5 - 1) / 6.
    assert _stats.rung_kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert math.isnan(_stats.rung_kendall_tau([1, 2], [1, 2]))  # too few trials
    assert _stats.rung_kendall_tau([1, 2, 3, math.nan], [1, 2, 3, 0]) == pytest.approx(1.0)


def test_epochs_to_target_and_best_so_far() -> None:
    assert _stats.epochs_to_target([3.0, 2.0, 1.0], 2.0) == 2
    assert _stats.epochs_to_target([3.0, math.nan], 1.0) is None
    spent, best = _stats.best_so_far([5, 1, 5], [0.5, 9.0, 0.3], [True, False, True])
    assert (spent, best) == ([5, 6, 11], [0.5, 0.5, 0.3])
    spent, best = _stats.best_so_far([1], [0.1], [False])
    assert spent == [1]
    assert math.isnan(best[0])


def test_rungs_and_the_first_rounds_trial_count() -> None:
    assert _stats.rungs(1, 3, 20) == [1, 3, 9]
    assert _stats.rungs(2, 2, 8) == [2, 4]
    plan = _plan(max_epochs=6, budget_epochs=18)
    # Synchronous ASHA at rungs 1, 3 (of 6): 1 + 2/3 + 3/9 = 2 epochs a trial, times 1.5 = 3:
    # the defaults (6) then 12 / 3 = 4 trials.
    assert first_round_trials(plan, "asha") == 5
    assert first_round_trials(plan, "full") == 3


def test_within_budget_keeps_trials_in_order_while_their_epochs_fit() -> None:
    trials = pd.DataFrame(
        {
            "trial": [2, 0, 1, 3, 4],
            "status": ["pruned", "completed", "pruned", "running", "completed"],
            "epochs": [1, 6, 3, 2, 6],
        }
    )
    assert within_budget(trials, 10)["trial"].tolist() == [0, 1, 2]
    assert within_budget(trials, 16)["trial"].tolist() == [0, 1, 2, 4]


def test_overall_rate_counts_the_tuned_protocols_pairs() -> None:
    versus = pd.DataFrame(
        {
            "protocol": ["defaults", "asha", "full"],
            "pairs": [4, 4, 6],
            "wins": [0, 1, 2],
            "ties": [0, 2, 3],
        }
    )
    assert overall_rate(versus) == pytest.approx(8 / 10)


def test_plan_checks_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="`budget_epochs` must be >= `max_epochs`"):
        _plan(max_epochs=10, budget_epochs=5)
    with pytest.raises(ValueError, match="`studies` must be an int >= 1"):
        _plan(studies=0)
    with pytest.raises(ValueError, match="must include 'greedylr'"):
        parse_schedules("cosine,step")
    with pytest.raises(ValueError, match="but got 'nope'"):
        parse_schedules("greedylr,nope")
    with pytest.raises(ValueError, match=r"\['cosine'\] twice"):
        parse_schedules(["greedylr", "cosine", "cosine"])
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        parse_protocol("some")
    assert parse_protocol("both") == ("asha", "full")
    assert parse_schedules(" greedylr, cosine ") == ("greedylr", "cosine")


def _plan(**changes: object) -> Plan:
    values: dict[str, object] = {
        "task": "quadratic",
        "function": "greedylr.tasks._quadratic:train",
        "schedules": ("greedylr", "cosine"),
        "backend": "optuna",
        "max_epochs": 6,
        "budget_epochs": 18,
        "studies": 1,
        "seeds": 1,
        "protocols": ("asha",),
        "searcher": "tpe",
        "min_epochs": 1,
        "reduction_factor": 3,
        "seed": 0,
    }
    values.update(changes)
    return Plan(**values)  # type: ignore[arg-type]
