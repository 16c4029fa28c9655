"""Write the Spark event logs under tests/data/spark/ that the replay tests read.

    pip install pyspark zstandard     # Spark 4 needs Java 17
    python tests/data/make_spark_logs.py

The tests never run Spark: they read the logs this script left, and check them against what it
did, written down here (and in ``JOB`` below, which the tests import):

- A Spark standalone cluster on this machine: a master on 127.0.0.1 and two workers of two cores
  each, one on 127.0.0.2 (healthy) and one on 127.0.0.3 (slow), so that each executor has a host
  of its own. (In ``local-cluster`` mode every executor has the same host, and Spark never
  starts a copy on a host where its task already ran: no copy would ever start.) The slow
  worker's environment holds ``STRAGGLER_FIXTURE_SLOWDOWN=4``, which its executor's Python
  workers inherit: every task attempt that runs there sleeps 4 times longer.
- One application per log. First a warm-up job (Spark's stage 0): ``WARMUP_TASKS`` tasks of
  0.5 s each, so that every slot has started its Python worker (some 3 s, more than a task
  here) before the measured job. Then the measured job of two stages: Spark's stage 1 maps
  ``STAGE0_TASKS`` partitions, task i sleeping ``work(0, i)`` seconds (x4 on the slow
  executor), then shuffles into stage 2's ``STAGE1_TASKS`` partitions, task i sleeping
  ``work(1, i)`` seconds (x4 on the slow executor).
- Four logs: without and with ``spark.speculation`` (multiplier 1.5, quantile 0.5, minimum run
  time 100 ms, checked every 100 ms, so that copies start within the short job), each in Spark
  4's default format (a rolling ``eventlog_v2_<app>`` directory of zstd-compressed files) and
  as one plain JSON-lines file: ``spark/<nospec|spec>-<rolling|plain>/`` holds what Spark wrote
  into ``spark.eventLog.dir``, under Spark's own name. The environment event (the class path:
  half the log) is left out through Spark's ``spark.eventLog.excludedPatterns``.

Which executor a task lands on is Spark's choice, so the logs differ from run to run; the tests
check what holds for any run (the tasks, their work, the executors' hosts and slowness).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "spark"

WARMUP_TASKS = 4
STAGE0_TASKS = 16
STAGE1_TASKS = 4
SLOWDOWN = 4.0
HEALTHY_HOST = "127.0.0.2"
SLOW_HOST = "127.0.0.3"
CORES_PER_WORKER = 2


def work(stage: int, index: int) -> float:
    """Seconds task ``index`` of ``stage`` sleeps on the healthy executor: 0.4 to 0.7 s in stage
    0, 0.6 to 0.9 s in stage 1 (a spread of sizes, so that work differs from task to task)."""
    base = 0.4 if stage == 0 else 0.6
    return base + 0.1 * ((index * 7) % 4)


# What the tests check the parsed logs against.
JOB = {
    # Spark's stage ids: 0 the warm-up, 1 the map, 2 the reduce.
    "stages": {0: WARMUP_TASKS, 1: STAGE0_TASKS, 2: STAGE1_TASKS},
    "slowdown": SLOWDOWN,
    "healthy_host": HEALTHY_HOST,
    "slow_host": SLOW_HOST,
    "cores_per_executor": CORES_PER_WORKER,
}

LOGS = {
    # name: (speculation, rolling zstd)
    "nospec-rolling": (False, True),
    "spec-rolling": (True, True),
    "nospec-plain": (False, False),
    "spec-plain": (True, False),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _warm(index: int) -> int:
    time.sleep(0.5)
    return index


def _sleepy(stage: int):
    def run(index: int) -> int:
        slowdown = float(os.environ.get("STRAGGLER_FIXTURE_SLOWDOWN", "1"))
        time.sleep(work(stage, index) * slowdown)
        return index

    return run


def _job(master: str, log_dir: Path, speculation: bool, rolling: bool) -> None:
    from pyspark.sql import SparkSession

    conf = {
        "spark.master": master,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.cores": str(CORES_PER_WORKER),
        "spark.cores.max": str(2 * CORES_PER_WORKER),
        "spark.executor.memory": "512m",
        "spark.ui.enabled": "false",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": log_dir.as_uri(),
        "spark.eventLog.rolling.enabled": str(rolling).lower(),
        "spark.eventLog.compress": str(rolling).lower(),
        "spark.eventLog.compression.codec": "zstd",
        "spark.speculation": str(speculation).lower(),
        "spark.speculation.multiplier": "1.5",
        "spark.speculation.quantile": "0.5",
        "spark.speculation.minTaskRuntime": "100ms",
        "spark.speculation.interval": "100ms",
        # Start only once both executors are there, so that both take tasks from the first.
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
        "spark.locality.wait": "0",
        # Keep the logs small: without the environment (every jar on the class path: half the
        # log) and without the accumulators that repeat the task metrics (Spark 4.1+ keys).
        "spark.eventLog.excludedPatterns": "SparkListenerEnvironmentUpdate",
        "spark.eventLog.includeTaskMetricsAccumulators": "false",
    }
    builder = SparkSession.builder.appName("straggler-fixture")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        sc = spark.sparkContext
        # Warm-up (job 0, stage 0): each of the 4 slots starts its Python worker, which takes
        # some 3 s, more than the tasks below; the measured job starts warm.
        sc.parallelize(range(WARMUP_TASKS), WARMUP_TASKS).map(_warm).collect()
        stage0 = sc.parallelize(range(STAGE0_TASKS), STAGE0_TASKS).map(_sleepy(0))
        shuffled = stage0.map(lambda i: (i % STAGE1_TASKS, i)).groupByKey(STAGE1_TASKS)
        keys = shuffled.map(lambda kv: _sleepy(1)(kv[0])).collect()
        assert sorted(keys) == list(range(STAGE1_TASKS)), keys
    finally:
        spark.stop()


def main() -> None:
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    env = dict(os.environ, SPARK_HOME=str(spark_home))
    spark_class = str(spark_home / "bin" / "spark-class")
    work_dir = Path(tempfile.mkdtemp(prefix="straggler-spark-"))
    port = _free_port()
    master = f"spark://127.0.0.1:{port}"
    daemons = [
        subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                          "--port", str(port), "--webui-port", str(_free_port())],
                         env=env, stdout=subprocess.DEVNULL, stderr=open(work_dir / "master.err", "w")),
    ]
    time.sleep(5)
    for host, slowdown in ((HEALTHY_HOST, 1.0), (SLOW_HOST, SLOWDOWN)):
        worker_env = dict(env, STRAGGLER_FIXTURE_SLOWDOWN=str(slowdown), SPARK_LOCAL_IP=host)
        daemons.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", host, "--cores", str(CORES_PER_WORKER),
             "--memory", "1g", "--webui-port", str(_free_port()), "--work-dir", str(work_dir / host), master],
            env=worker_env, stdout=subprocess.DEVNULL, stderr=open(work_dir / f"worker-{host}.err", "w"),
        ))
    time.sleep(5)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        OUT.mkdir(exist_ok=True)
        for name, (speculation, rolling) in LOGS.items():
            log_dir = work_dir / name.replace(".", "-")
            log_dir.mkdir()
            _job(master, log_dir, speculation, rolling)
            (written,) = list(log_dir.iterdir())
            # spark/<name>/ holds what Spark wrote into spark.eventLog.dir, under Spark's name.
            target = OUT / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            shutil.move(str(written), str(target / written.name))
            print(f"{name}: {written.name}", flush=True)
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in daemons:
            daemon.wait(timeout=30)
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
