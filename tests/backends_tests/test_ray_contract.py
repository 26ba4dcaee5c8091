"""The contract suite against the real Ray Tune, on a private local Ray instance.

Every test runs inside a loopback-only network namespace (Ray would otherwise talk to itself
through the machine's outward address).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backends_tests.contract_suite import BackendContractSuite
from tests.backends_tests.netns import ONE_RAY_AT_A_TIME
from tests.backends_tests.netns import private_network


pytest.importorskip("ray.tune")
pytestmark = ONE_RAY_AT_A_TIME


@pytest.fixture(scope="module", autouse=True)
def _loopback_only() -> Iterator[None]:
    with private_network():
        yield


class TestRayContract(BackendContractSuite):
    backend = "ray"
