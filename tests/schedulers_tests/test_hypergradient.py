"""SGD-HD and Adam-HD (Baydin et al. 2018) against their update rules derived by hand.

The problem: ``f(a, b) = a**2 / 2 + b**2`` from ``a = 1, b = 2`` (gradient ``(a, 2 b)``), with
``alpha_0 = 0.1`` and ``hypergrad_lr = 0.01``. Every expected value is worked out in the
comments, from the paper's rules, not from the implementation.
"""

from __future__ import annotations

import copy
import io
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from greedylr.schedulers import SGDHD
from greedylr.schedulers import AdamHD
from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.schedulers import optimizer_defaults
from greedylr.schedulers import step_scheduler


def _tensor(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def _loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a**2 / 2).sum() + (b**2).sum()


def _trajectory(
    optimizer: torch.optim.Optimizer, a: torch.Tensor, b: torch.Tensor, steps: int
) -> list[tuple[float, list[float], list[float]]]:
    """``(alpha_t, a_t, b_t)`` after each of ``steps`` steps."""
    rows = []
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(a, b).backward()
        optimizer.step()
        rows.append((optimizer.param_groups[0]["lr"], a.tolist(), b.tolist()))
    return rows


def test_sgd_hd_follows_the_rule_derived_by_hand() -> None:
    a, b = _tensor(1.0), _tensor(2.0)  # two tensors: the dot product spans the whole group
    optimizer = SGDHD([a, b], lr=0.1, hypergrad_lr=0.01)
    # t=1: g1 = (1, 4); u0 = 0, so alpha1 = 0.1; theta1 = (1 - 0.1, 2 - 0.4) = (0.9, 1.6).
    # t=2: g2 = (0.9, 3.2); g2 . g1 = 0.9 + 12.8 = 13.7; alpha2 = 0.1 + 0.01 * 13.7 = 0.237;
    #      theta2 = (0.9 - 0.237 * 0.9, 1.6 - 0.237 * 3.2) = (0.6867, 0.8416).
    # t=3: g3 = (0.6867, 1.6832); g3 . g2 = 0.61803 + 5.38624 = 6.00427;
    #      alpha3 = 0.237 + 0.0600427 = 0.2970427;
    #      theta3 = (0.6867 - 0.2970427 * 0.6867, 0.8416 - 0.2970427 * 1.6832)
    #             = (0.48272077791, 0.34161772736).
    expected = [
        (0.1, 0.9, 1.6),
        (0.237, 0.6867, 0.8416),
        (0.2970427, 0.48272077791, 0.34161772736),
    ]
    for (alpha, [a_t], [b_t]), (want_alpha, want_a, want_b) in zip(
        _trajectory(optimizer, a, b, 3), expected
    ):
        assert alpha == pytest.approx(want_alpha, rel=1e-12)
        assert (a_t, b_t) == pytest.approx((want_a, want_b), rel=1e-10)


def test_sgdn_hd_with_nesterov_momentum_follows_the_rule_derived_by_hand() -> None:
    a, b = _tensor(1.0), _tensor(2.0)
    optimizer = SGDHD([a, b], lr=0.1, hypergrad_lr=0.01, momentum=0.5)
    # v_t = 0.5 v_{t-1} + g_t, u_t = g_t + 0.5 v_t.
    # t=1: g1 = (1, 4), v1 = (1, 4), u1 = (1.5, 6); alpha1 = 0.1; theta1 = (0.85, 1.4).
    # t=2: g2 = (0.85, 2.8); g2 . u1 = 1.275 + 16.8 = 18.075; alpha2 = 0.28075;
    #      v2 = (1.35, 4.8), u2 = (1.525, 5.2); theta2 = (0.85 - 0.42814375, 1.4 - 1.4599)
    #      = (0.42185625, -0.0599).
    # t=3: g3 = (0.42185625, -0.1198); g3 . u2 = 0.64333078125 - 0.62296 = 0.02037078125;
    #      alpha3 = 0.28075 + 0.0002037078125 = 0.2809537078125;
    #      v3 = (1.09685625, 2.2802), u3 = (0.970284375, 1.0203);
    #      theta3 = (0.42185625 - alpha3 * 0.970284375, -0.0599 - alpha3 * 1.0203).
    alpha3 = 0.2809537078125
    expected = [
        (0.1, 0.85, 1.4),
        (0.28075, 0.42185625, -0.0599),
        (alpha3, 0.42185625 - alpha3 * 0.970284375, -0.0599 - alpha3 * 1.0203),
    ]
    for (alpha, [a_t], [b_t]), (want_alpha, want_a, want_b) in zip(
        _trajectory(optimizer, a, b, 3), expected
    ):
        assert alpha == pytest.approx(want_alpha, rel=1e-12)
        assert (a_t, b_t) == pytest.approx((want_a, want_b), rel=1e-10)


def test_adam_hd_follows_the_rule_derived_by_hand() -> None:
    theta = _tensor(1.0, 2.0)
    optimizer = AdamHD([theta], lr=0.1, hypergrad_lr=0.01, beta1=0.5, beta2=0.5, eps=0.0)
    # u_t = (m_t / (1 - 0.5**t)) / sqrt(v_t / (1 - 0.5**t)) = m_t / sqrt((1 - 0.5**t) v_t).
    # t=1: g1 = (1, 4); m1 = (0.5, 2), v1 = (0.5, 8); u1 = (1, 1); alpha1 = 0.1;
    #      theta1 = (0.9, 1.9).
    # t=2: g2 = (0.9, 3.8); g2 . u1 = 4.7; alpha2 = 0.1 + 0.047 = 0.147;
    #      m2 = (0.7, 2.9), v2 = (0.655, 11.22); u2 = (0.7 / sqrt(0.49125), 2.9 / sqrt(8.415))
    #      = (0.99872692501, 0.99970286732); theta2 = theta1 - 0.147 u2
    #      = (0.75318714202, 1.75304367850).
    # t=3: g3 = (0.75318714202, 3.50608735700); alpha3 = 0.147 + 0.01 * g3 . u2
    #      = 0.147 + 0.01 * (0.75222828 + 3.50504558) = 0.18957273862;
    #      m3 = (0.72659357101, 3.20304367850), v3 = (0.61114544, 11.75632428);
    #      u3 = m3 / sqrt(0.875 v3); theta3 = theta2 - alpha3 u3 = (0.56482608357, 1.56372261295).
    u2 = (0.7 / math.sqrt(0.49125), 2.9 / math.sqrt(8.415))
    theta2 = (0.9 - 0.147 * u2[0], 1.9 - 0.147 * u2[1])
    expected = [
        (0.1, [0.9, 1.9]),
        (0.147, list(theta2)),
        (0.18957273862, [0.56482608357, 1.56372261295]),
    ]
    for step, (want_alpha, want_theta) in enumerate(expected, start=1):
        optimizer.zero_grad()
        _loss(theta[:1], theta[1:]).backward()
        optimizer.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(want_alpha, rel=1e-10), step
        assert theta.tolist() == pytest.approx(want_theta, rel=1e-10), step
    assert theta2 == pytest.approx((0.75318714202, 1.75304367850), rel=1e-10)


@pytest.mark.parametrize(
    ("hypergradient", "plain"),
    [
        (lambda p: SGDHD(p, lr=0.1, hypergrad_lr=0.0), lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            lambda p: SGDHD(p, lr=0.1, hypergrad_lr=0.0, momentum=0.9, weight_decay=0.1),
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
        ),
        (
            lambda p: AdamHD(p, lr=0.1, hypergrad_lr=0.0, weight_decay=0.1),
            lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.1),
        ),
    ],
    ids=["sgd", "nesterov", "adam"],
)
def test_without_a_hypergradient_they_are_torch_s_optimizers(
    hypergradient: Callable[[Any], torch.optim.Optimizer],
    plain: Callable[[Any], torch.optim.Optimizer],
) -> None:
    runs = []
    for build in (hypergradient, plain):
        a, b = _tensor(1.0, -0.5), _tensor(2.0)
        runs.append(_trajectory(build([a, b]), a, b, 5))
    flat = [[alpha, *a_t, *b_t] for run in runs for alpha, a_t, b_t in run]
    assert flat[:5] == [pytest.approx(row, rel=1e-12) for row in flat[5:]]


@pytest.mark.parametrize(
    "build",
    [
        lambda p: SGDHD(p, lr=0.1, hypergrad_lr=0.01, momentum=0.9, weight_decay=0.01),
        lambda p: AdamHD(p, lr=0.1, hypergrad_lr=0.01, weight_decay=0.01),
    ],
    ids=["sgd-hd", "adam-hd"],
)
def test_state_round_trip_continues_the_same_trajectory(
    build: Callable[[Any], torch.optim.Optimizer],
) -> None:
    a, b = _tensor(1.0, -0.5), _tensor(2.0)
    optimizer = build([a, b])
    _trajectory(optimizer, a, b, 3)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)  # plain values: loadable with weights_only
    saved_a, saved_b = a.detach().clone(), b.detach().clone()
    uninterrupted = _trajectory(optimizer, a, b, 4)

    a2, b2 = saved_a.requires_grad_(), saved_b.requires_grad_()
    restored = build([a2, b2])
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert _trajectory(restored, a2, b2, 4) == uninterrupted
    assert len({alpha for alpha, _, _ in uninterrupted}) == 4  # the LR kept moving


def test_each_param_group_adapts_its_own_lr() -> None:
    a, b = _tensor(1.0), _tensor(2.0)
    optimizer = SGDHD([{"params": [a]}, {"params": [b], "hypergrad_lr": 0.0}], lr=0.1)
    _trajectory(optimizer, a, b, 3)
    fixed, adapted = optimizer.param_groups[1]["lr"], optimizer.param_groups[0]["lr"]
    assert fixed == 0.1
    # Group a alone, the default beta 1e-3: g1 = 1, a1 = 0.9; g2 = 0.9, alpha2 = 0.1009,
    # a2 = 0.9 - 0.1009 * 0.9 = 0.80919; g3 . g2 = 0.80919 * 0.9 = 0.728271,
    # alpha3 = 0.1009 + 0.000728271 = 0.101628271.
    assert adapted == pytest.approx(0.101628271, rel=1e-12)


def test_a_parameter_without_gradient_drops_out_of_the_hypergradient() -> None:
    a, b = _tensor(1.0), _tensor(2.0)
    optimizer = SGDHD([a, b], lr=0.1, hypergrad_lr=0.01)
    _trajectory(optimizer, a, b, 1)  # theta1 = (0.9, 1.6), both moved along g1 = (1, 4)
    optimizer.zero_grad(set_to_none=True)
    (a**2 / 2).sum().backward()  # b gets no gradient: it does not move
    optimizer.step()
    # alpha2 = 0.1 + 0.01 * (0.9 * 1) = 0.109; a2 = 0.9 - 0.109 * 0.9 = 0.8019; b stays 1.6.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.109, rel=1e-12)
    assert (a.item(), b.item()) == pytest.approx((0.8019, 1.6), rel=1e-12)
    optimizer.zero_grad(set_to_none=True)
    _loss(a, b).backward()
    optimizer.step()
    # b's last step did not depend on alpha2: only a's term counts, 0.8019 * 0.9 = 0.72171.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.109 + 0.0072171, rel=1e-12)


def test_adam_hd_leaves_a_parameter_that_did_not_move_out_of_the_hypergradient() -> None:
    a, b = _tensor(1.0), _tensor(2.0)
    optimizer = AdamHD([a, b], lr=0.1, hypergrad_lr=0.01, beta1=0.5, beta2=0.5, eps=0.0)
    _trajectory(optimizer, a, b, 1)  # u1 = (1, 1): a1 = 0.9, b1 = 1.9
    optimizer.zero_grad(set_to_none=True)
    (a**2 / 2).sum().backward()  # only a: alpha2 = 0.1 + 0.01 * 0.9 = 0.109
    optimizer.step()
    u2 = 0.7 / math.sqrt(0.75 * 0.655)  # a's m2 = 0.7, v2 = 0.655 (as in the test above)
    a2 = 0.9 - 0.109 * u2
    assert (a.item(), b.item()) == pytest.approx((a2, 1.9), rel=1e-12)
    optimizer.zero_grad(set_to_none=True)
    _loss(a, b).backward()
    optimizer.step()
    # b did not move at step 2: alpha3 = 0.109 + 0.01 * a2 * u2, without b's 3.8 * 1.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.109 + 0.01 * a2 * u2, rel=1e-12)


def test_the_registry_builds_them_with_flat_parameters_under_the_constant_schedule() -> None:
    assert optimizer_defaults("sgd-hd") == {
        "hypergrad_lr": 1e-3,
        "momentum": 0.0,
        "weight_decay": 0.0,
    }
    assert optimizer_defaults("adam-hd") == {
        "hypergrad_lr": 1e-7,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    a, b = _tensor(1.0), _tensor(2.0)
    optimizer = create_optimizer("adam-hd", [a, b], lr=0.1, beta2=0.99, hypergrad_lr=0.01)
    assert isinstance(optimizer, AdamHD)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    sgd = create_optimizer("sgd-hd", [a, b], lr=0.1, hypergrad_lr=0.01)
    scheduler = create_schedule("constant", sgd, horizon=3)
    for _ in range(3):  # the constant schedule leaves the adapted LR alone
        sgd.zero_grad()
        _loss(a, b).backward()
        sgd.step()
        step_scheduler(scheduler, 1.0)
    assert sgd.param_groups[0]["lr"] != 0.1
    assert sgd.param_groups[0]["lr"] == scheduler.get_last_lr()[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": -0.1}, ValueError, "`lr` must be >= 0, but got lr=-0.1."),
        ({"lr": "0.1"}, TypeError, "`lr` must be a number, but got lr='0.1'."),
        ({"lr": 0.1, "hypergrad_lr": -1}, ValueError, "`hypergrad_lr` must be >= 0, but got"),
        ({"lr": 0.1, "momentum": 1.0}, ValueError, "`momentum` must be in [0, 1), but got"),
        ({"lr": 0.1, "weight_decay": math.nan}, ValueError, "`weight_decay` must be >= 0"),
    ],
)
def test_sgd_hd_bad_input(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        SGDHD([_tensor(1.0)], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta1": 1.0}, "`beta1` must be in [0, 1), but got beta1=1.0."),
        ({"beta2": -0.1}, "`beta2` must be in [0, 1), but got beta2=-0.1."),
        ({"eps": -1e-8}, "`eps` must be >= 0, but got eps=-1e-08."),
        ({"hypergrad_lr": math.inf}, "`hypergrad_lr` must be >= 0, but got hypergrad_lr=inf."),
    ],
)
def test_adam_hd_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AdamHD([_tensor(1.0)], lr=0.1, **kwargs)


def test_the_registry_refuses_what_the_paper_does_not_define() -> None:
    with pytest.raises(ValueError, match=re.escape("Unknown parameter(s) ['nesterov']")):
        create_optimizer("sgd-hd", [_tensor(1.0)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=re.escape("`lr` must be > 0, but got lr=0.")):
        create_optimizer("adam-hd", [_tensor(1.0)], lr=0)


def test_a_deep_copied_state_dict_is_independent_of_training() -> None:
    a, b = _tensor(1.0), _tensor(2.0)
    optimizer = SGDHD([a, b], lr=0.1, hypergrad_lr=0.01)
    _trajectory(optimizer, a, b, 2)
    saved = copy.deepcopy(optimizer.state_dict())
    _trajectory(optimizer, a, b, 2)
    assert saved["param_groups"][0]["lr"] == pytest.approx(0.237, rel=1e-12)
    assert saved["state"][0]["previous_direction"].tolist() == pytest.approx([0.9])
