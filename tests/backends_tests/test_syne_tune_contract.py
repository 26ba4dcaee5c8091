"""The contract suite against the real Syne Tune (its LocalBackend: one process per trial)."""

from __future__ import annotations

import pytest

from tests.backends_tests.contract_suite import BackendContractSuite


pytest.importorskip("syne_tune")


class TestSyneTuneContract(BackendContractSuite):
    backend = "syne-tune"
