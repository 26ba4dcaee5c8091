"""The contract suite against the real Optuna, plus Optuna-specific behaviour."""

from __future__ import annotations

import pytest

from tests.backends_tests.contract_suite import BackendContractSuite


pytest.importorskip("optuna")


class TestOptunaContract(BackendContractSuite):
    backend = "optuna"
