"""Shared fixtures: every detector test runs against each implementation of the Detector."""

from __future__ import annotations

import pytest

import straggler
from straggler._reference import ReferenceDetector

# The reference model always runs. The Rust Detector joins as soon as the package exports it;
# to make it mandatory, replace the getattr below with `straggler.Detector`.
_RUST_DETECTOR = getattr(straggler, "Detector", None)
DETECTOR_IMPLEMENTATIONS = [ReferenceDetector] + ([_RUST_DETECTOR] if _RUST_DETECTOR else [])


@pytest.fixture(params=DETECTOR_IMPLEMENTATIONS, ids=lambda cls: cls.__name__)
def detector_cls(request: pytest.FixtureRequest) -> type:
    return request.param
