"""Hostile: the Dask engine when the client goes away, and get_executor options."""

from __future__ import annotations

import pytest
from _hostile_util import run_script

pytestmark = pytest.mark.timeout(180)
pytest.importorskip("distributed")


def test_hostile_closing_dask_client_resolves_every_future() -> None:
    # Every Future resolves (with an error is fine) and shutdown() returns.
    ok, out = run_script(
        """
        import os, time, threading, collections
        import straggler as sg
        from distributed import LocalCluster, Client

        def work(i):
            for k in range(20):
                sg.heartbeat(progress=k / 20); time.sleep(0.05)
            return i

        if __name__ == "__main__":
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
            client = Client(cluster)
            ex = sg.SpeculativeExecutor(client, policy=None, interval=0.05)
            futs = [ex.submit(work, i) for i in range(2)]
            time.sleep(0.3)
            client.close()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(f.done() for f in futs):
                time.sleep(0.1)
            states = collections.Counter(f._state for f in futs)
            t = threading.Thread(target=ex.shutdown, daemon=True); t.start(); t.join(10)
            cluster.close()
            print("states", states, "shutdown returned", not t.is_alive(), flush=True)
            ok = all(f.done() for f in futs) and not t.is_alive()
            os._exit(0 if ok else 1)
        """,
        timeout=120,
    )
    assert ok, out


def test_hostile_get_executor_retries_message_shows_value() -> None:
    import distributed
    import straggler as sg

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        with pytest.raises(ValueError, match="retries=2"):
            sg.SpeculativeExecutor(client.get_executor(retries=2))


def test_hostile_get_executor_unknown_worker_is_not_ignored() -> None:
    # client.get_executor(workers="tcp://nowhere:1") restricts every task to that worker: Dask
    # keeps them waiting. Running them on some other worker silently breaks the restriction.
    import distributed
    import straggler as sg

    def where() -> str:
        return distributed.get_worker().address

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        try:
            ex = sg.SpeculativeExecutor(client.get_executor(workers="tcp://nowhere:1"), policy=None)
        except (TypeError, ValueError):
            return  # refused: fine
        try:
            f = ex.submit(where)
            try:
                address = f.result(timeout=5)
            except Exception:
                return  # waits or fails: fine
            pytest.fail(f"a task restricted to tcp://nowhere:1 ran on {address}")
        finally:
            ex.shutdown(wait=False, cancel_futures=True)
