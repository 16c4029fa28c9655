"""Shared fixtures: every detector test runs against each implementation of the Detector."""

from __future__ import annotations

import pytest
import straggler
from straggler._reference import ReferenceDetector

# Both implementations run every detector test: the Rust one must agree with the reference.
_RUST_DETECTOR = straggler.Detector
DETECTOR_IMPLEMENTATIONS = [ReferenceDetector, _RUST_DETECTOR]


@pytest.fixture(params=DETECTOR_IMPLEMENTATIONS, ids=lambda cls: cls.__name__)
def detector_cls(request: pytest.FixtureRequest) -> type:
    return request.param


# Tests that start Ray run last: once Ray's gRPC threads have run in this process, a process
# started by fork may crash (fork-started workers died by SIGSEGV on CPython 3.13 after the
# Ray tests, in the process-engine and process-pool tests that use fork).
_RAY_FILES = {"test_executor_ray.py", "test_ray_hostile.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def starts_ray(item: pytest.Item) -> bool:
        return item.path.name in _RAY_FILES or "[ray" in item.nodeid

    items.sort(key=starts_ray)  # stable: the order within each group is kept
