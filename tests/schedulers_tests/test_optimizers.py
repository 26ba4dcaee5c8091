from __future__ import annotations

import re

import pytest
import torch

from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.schedulers import list_optimizers
from greedylr.schedulers import step_scheduler


def parameters() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(2, 1).parameters())


def test_list_optimizers() -> None:
    assert list_optimizers() == [
        "adam",
        "adam-hd",
        "adamw",
        "adamw-schedulefree",
        "sgd",
        "sgd-hd",
        "sgd-schedulefree",
    ]


def test_sgd_defaults_and_nesterov() -> None:
    group = create_optimizer("sgd", parameters(), lr=0.1).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.0, False)
    assert (group["weight_decay"], group["dampening"]) == (0.0, 0.0)
    optimizer = create_optimizer(
        "sgd", parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 1e-4)


def test_adam_and_adamw_take_flat_betas() -> None:
    adam = create_optimizer("adam", parameters(), lr=1e-3, beta1=0.8, beta2=0.99)
    assert isinstance(adam, torch.optim.Adam)
    assert not isinstance(adam, torch.optim.AdamW)
    group = adam.param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.8, 0.99), 1e-8, 0.0)
    adamw = create_optimizer("adamw", parameters(), lr=1e-3)
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.param_groups[0]["betas"], adamw.param_groups[0]["weight_decay"]) == (
        (0.9, 0.999),
        0.01,
    )


def test_param_groups_keep_their_own_lr() -> None:
    model = torch.nn.Linear(2, 1)
    groups = [{"params": [model.weight], "lr": 0.5}, {"params": [model.bias]}]
    optimizer = create_optimizer("sgd", groups, lr=0.1, momentum=0.9)
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.1]


def test_optimizer_trains_under_a_schedule() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = create_optimizer("adamw", model.parameters(), lr=0.1)
    scheduler = create_schedule("cosine", optimizer, horizon=3)
    inputs, targets = torch.ones(4, 2), torch.zeros(4, 1)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        step_scheduler(scheduler, loss.item())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown optimizer 'rmsprop'; valid names are ['adam', 'adam-hd', 'adamw', "
            "'adamw-schedulefree', 'sgd', 'sgd-hd', 'sgd-schedulefree']."
        ),
    ):
        create_optimizer("rmsprop", parameters(), lr=0.1)


def test_unknown_parameter_lists_valid_parameters() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Unknown parameter(s) ['betas'] for optimizer 'adam'; valid parameters are "
            "['beta1', 'beta2', 'eps', 'weight_decay']."
        ),
    ):
        create_optimizer("adam", parameters(), lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "valid parameters are ['dampening', 'momentum', 'nesterov', 'weight_decay']"
        ),
    ):
        create_optimizer("sgd", parameters(), lr=0.1, beta1=0.9)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("sgd", {"nesterov": True}, "`nesterov=True` needs `momentum > 0` and `dampening == 0`"),
        ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "`dampening == 0`"),
        ("sgd", {"momentum": 1.0}, "`momentum` must be in [0, 1), but got momentum=1.0."),
        ("sgd", {"weight_decay": -1.0}, "`weight_decay` must be >= 0"),
        ("adam", {"beta1": 1.0}, "`beta1` must be in [0, 1), but got beta1=1.0."),
        ("adamw", {"beta2": -0.1}, "`beta2` must be in [0, 1)"),
        ("adamw", {"eps": -1e-8}, "`eps` must be >= 0"),
    ],
)
def test_invalid_values_raise(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        create_optimizer(name, parameters(), lr=0.1, **params)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("inf")])
def test_lr_must_be_positive(lr: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"`lr` must be > 0, but got lr={lr!r}.")):
        create_optimizer("sgd", parameters(), lr=lr)


def test_wrong_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="`nesterov` must be a bool, but got nesterov=1."):
        create_optimizer("sgd", parameters(), lr=0.1, momentum=0.9, nesterov=1)
    with pytest.raises(TypeError, match="`lr` must be a number, but got lr='0.1'."):
        create_optimizer("sgd", parameters(), lr="0.1")  # type: ignore[arg-type]
