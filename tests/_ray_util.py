"""Helpers for the Ray tests: a small Ray runtime started and shut down around a module.

Ray's workers do not see ``tests/`` on their path: the test modules that define task
functions are pickled by value (``register_pickle_by_value``), so a worker needs no import.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any, Iterator

# Small settings for a 2-core machine: no dashboard, no log forwarding, little object store.
RAY_SETTINGS = dict(include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)


def by_value(ray: Any, *modules: str) -> None:
    for name in modules:
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])


@contextlib.contextmanager
def started_ray(ray: Any, *modules: str, **settings: Any) -> Iterator[None]:
    """``ray.init`` a local runtime (``num_cpus=2`` unless told otherwise), or connect to
    ``address=``; shut it down at the end."""
    if ray.is_initialized():
        ray.shutdown()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ray's own deprecation notices at start
        if "address" not in settings:
            # "local": always a runtime of our own, never one another process left running
            # (ray.init() without an address joins a runtime it finds on the machine).
            settings = {"address": "local", "num_cpus": 2, **RAY_SETTINGS, **settings}
        else:
            settings = {"log_to_driver": False, **settings}
        try:
            ray.init(**settings)
        except BaseException:
            ray.shutdown()  # a start that failed half way must not leave Ray's threads behind
            raise
    by_value(ray, *modules)
    try:
        yield
    finally:
        ray.shutdown()
