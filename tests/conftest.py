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
