"""Run the payment ETL pipeline locally with the ``spark-pipelines`` CLI (Spark 4.2 + Delta 4.4).

How the CLI is made to work locally (what did not work out of the box, and why):

* ``spark-pipelines`` = ``spark-submit`` of ``pyspark/pipelines/cli.py``, whose Python client then
  starts a local Spark Connect server in a NEW JVM through ``launch_gateway``. That second JVM does not
  inherit the CLI's ``--conf``/``--driver-class-path``: it reads ``PYSPARK_SUBMIT_ARGS``. So the same
  submit arguments are passed twice, on the command line and in ``PYSPARK_SUBMIT_ARGS``.
* ``spark.jars`` alone is not enough: the Connect server instantiates the Delta session extension
  before jars added at run time are visible (``ClassNotFoundException``/"requires the
  DeltaSparkSessionExtension"). The Kafka/Delta jars therefore go on ``--driver-class-path``.
* The spec's ``configuration`` block only sets runtime SQL confs; static ones (extensions, catalog,
  warehouse) must be submit arguments. The block carries the pipeline settings (``pa.*``) and the UTC
  session time zone.
* With ``spark.sql.catalogImplementation=in-memory`` (what every other local job uses) the pipeline
  forgets its tables between runs and the second run fails with
  ``DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION``. The pipeline server therefore uses a Hive catalog on
  an embedded Derby metastore PRIVATE to this pipeline (``<schema>/_pipelines/payment_etl/metastore_db``);
  nothing else opens it, and a file lock lets only one update run at a time (like a Lakeflow
  pipeline). Its warehouse is the schema folder, so the tables land where ``spark.common.tables``
  expects them (``<warehouse>/<catalog>/<schema>/<table>``) and every other job reads them by path.
* The OSS CLI has no continuous mode (one ``run`` = one triggered update: streaming tables process what
  is available, materialized views, if any, are recomputed) and every ``run`` pays for two JVM starts, a cold
  JIT and code generation. Continuous mode (``run_continuously``) therefore uses
  ``spark.pipelines.warm_runner``: the CLI's own steps, repeated every ``interval`` seconds in ONE
  long-lived Connect session (started exactly like the CLI); each update is incremental for the
  streaming tables thanks to the checkpoints in ``storage``, and gold (the partial aggregates) can be
  refreshed on every N-th update only (``gold_every``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spark.common.jars import spark_jars
from spark.common.tables import Lakehouse
from spark.pipelines.payment_etl import PIPELINE_NAME, TRANSFORMATIONS_DIR, PipelineSettings

log = logging.getLogger(__name__)
# run as a script by spark-class (not imported here: it loads the Spark Connect client)
WARM_RUNNER = Path(__file__).with_name("warm_runner.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LocalPipeline:
    lakehouse: Lakehouse
    settings: PipelineSettings
    driver_memory: str = "2g"
    shuffle_partitions: int = 4
    # task slots of the local Connect server (its master ``local[N]``). The CLI's default remote is plain
    # ``local``, i.e. ONE task slot: every flow's tasks queued behind each other on one thread. Twice the
    # cores: an update is many small latency-bound tasks (Kafka fetches, Delta log reads, Python
    # workers) of several flows at once
    task_slots: int = 2 * (os.cpu_count() or 1)
    extra_conf: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.lakehouse.pipeline_dir / PIPELINE_NAME

    @property
    def spec_path(self) -> Path:
        return self.state_dir / "spark-pipeline.yml"

    def write_spec(self) -> Path:
        """The pipeline spec (and a link to the definitions) in the pipeline's state folder."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        link = self.state_dir / "transformations"
        if link.is_symlink() and Path(os.readlink(link)) != TRANSFORMATIONS_DIR:
            link.unlink()
        if not link.exists():
            link.symlink_to(TRANSFORMATIONS_DIR, target_is_directory=True)
        spec = {
            "name": PIPELINE_NAME,
            "storage": (self.state_dir / "storage").as_uri(),
            "configuration": {
                "spark.sql.session.timeZone": "UTC",
                "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
                # tables are Delta (the default on Databricks); locally the default format is parquet
                "spark.sql.sources.default": "delta",
                # no extra empty micro-batch per stateful flow just to move the watermark
                "spark.sql.streaming.noDataMicroBatches.enabled": "false",
                # state stores commit a changelog per micro-batch instead of a full RocksDB snapshot
                "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
                # checkpoint files renamed with FileSystem.rename: the FileContext path forks `readlink`
                # for every rename on the local file system
                "spark.sql.streaming.checkpointFileManagerClass": (
                    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
                ),
                **self.settings.configuration(),
            },
            "libraries": [{"glob": {"include": "transformations/**"}}],
        }
        self.spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return self.spec_path

    def remote_args(self) -> list[str]:
        """The CLI's ``--remote``: the local Connect server it starts runs with this master. Command line
        only: ``PYSPARK_SUBMIT_ARGS`` (the server's own submit) must not name a remote."""
        return ["--remote", f"local[{self.task_slots}]"]

    def submit_args(self) -> list[str]:
        schema_dir = self.lakehouse.schema_dir
        metastore = self.state_dir / "metastore_db"
        conf = {
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(schema_dir),
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore};create=true",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.streaming.stateStore.providerClass": (
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
            ),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            # compiled code kept across updates: one update generates more classes than the default 100
            # entries (every flow, every stage), so each update recompiled what the previous one had
            "spark.sql.codegen.cache.maxEntries": "2000",
            # Delta commits on the local file system without forking `readlink` per rename (HDFSLogStore
            # renames through FileContext); one writer per table (the update lock), as LocalLogStore needs
            "spark.delta.logStore.file.impl": "io.delta.storage.LocalLogStore",
            **self.extra_conf,
        }
        args = [
            "--driver-class-path",
            ":".join(str(p) for p in spark_jars()),
            "--driver-memory",
            self.driver_memory,
            "--driver-java-options",
            f"-Dderby.system.home={self.state_dir}",
        ]
        for k, v in conf.items():
            args += ["--conf", f"{k}={v}"]
        return args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYSPARK_SUBMIT_ARGS"] = " ".join(shlex.quote(a) for a in self.submit_args()) + " pyspark-shell"
        env["PYSPARK_PYTHON"] = sys.executable
        env["PYSPARK_DRIVER_PYTHON"] = sys.executable
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def command(self, *, full_refresh: bool = False, refresh: list[str] | None = None, dry: bool = False) -> list[str]:
        cli = Path(sys.executable).parent / "spark-pipelines"
        cmd = [
            str(cli),
            *self.remote_args(),
            *self.submit_args(),
            "dry-run" if dry else "run",
            "--spec",
            str(self.spec_path),
        ]
        if full_refresh and not dry:
            cmd.append("--full-refresh-all")
        if refresh and not dry:
            cmd += ["--refresh", ",".join(refresh)]
        return cmd

    @contextlib.contextmanager
    def _exclusive_update(self) -> Iterator[None]:
        """The spec written and this pipeline's update lock held (one update at a time)."""
        self.lakehouse.schema_dir.mkdir(parents=True, exist_ok=True)
        self.write_spec()
        with open(self.state_dir / "update.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(
                    f"another update of {PIPELINE_NAME} is running for {self.lakehouse.schema_dir}"
                ) from None
            yield

    def run_once(
        self,
        *,
        full_refresh: bool = False,
        refresh: list[str] | None = None,
        dry: bool = False,
        timeout: float | None = None,
    ) -> int:
        """One pipeline update through the CLI; returns its exit code (0 = the run COMPLETED)."""
        with self._exclusive_update():
            cmd = self.command(full_refresh=full_refresh, refresh=refresh, dry=dry)
            log.info("running %s", " ".join(shlex.quote(c) for c in cmd[:1] + cmd[-4:]))
            proc = subprocess.Popen(cmd, env=self.environment(), cwd=self.state_dir, start_new_session=True)
            try:
                return proc.wait(timeout=timeout)
            except BaseException:
                _terminate(proc)
                raise

    def warm_command(
        self, *, every_s: float = 30.0, gold_every: int = 1, control_dir: Path | None = None, max_updates: int = 0
    ) -> list[str]:
        """The warm runner (``spark.pipelines.warm_runner``) started like the CLI."""
        spark_class = Path(sys.executable).parent / "spark-class"
        cmd = [
            str(spark_class),
            "org.apache.spark.deploy.SparkPipelines",
            str(WARM_RUNNER),
            *self.remote_args(),
            *self.submit_args(),
            "--pipeline-spec",
            str(self.spec_path),
            "--every",
            str(every_s),
            "--gold-every",
            str(gold_every),
            "--owner-pid",
            str(os.getpid()),
        ]
        if control_dir:
            cmd += ["--control-dir", str(control_dir)]
        if max_updates:
            cmd += ["--max-updates", str(max_updates)]
        return cmd

    def run_continuously(self, interval_s: float = 30.0, *, gold_every: int = 1, max_updates: int = 0) -> int:
        """Updates every ``interval_s`` seconds in one long-lived Spark Connect session until
        SIGINT/SIGTERM (or ``max_updates``); gold on every ``gold_every``-th update."""
        with self._exclusive_update():
            proc = subprocess.Popen(
                self.warm_command(every_s=interval_s, gold_every=gold_every, max_updates=max_updates),
                env=self.environment(),
                cwd=self.state_dir,
                start_new_session=True,
            )
            previous = {s: signal.signal(s, lambda *_: _terminate(proc)) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                return proc.wait()
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
                _terminate(proc)

    def warm(self, log_path: Path | None = None) -> WarmSession:
        """A long-lived pipeline session driven update by update (benchmarks, tests)."""
        return WarmSession(self, log_path)


def _terminate(proc: subprocess.Popen) -> None:
    """Stop a pipeline process group: SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class WarmSession:
    """``with pipeline.warm() as s: seconds = s.update()`` - one Connect session, updates on demand
    (command files in ``<state>/control``; see ``spark.pipelines.warm_runner``)."""

    def __init__(self, pipeline: LocalPipeline, log_path: Path | None = None):
        self.pipeline = pipeline
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.control = pipeline.state_dir / "control"
        self.n = 0
        self.last_phases: dict[str, float] = {}

    def __enter__(self) -> WarmSession:
        p = self.pipeline
        p.lakehouse.schema_dir.mkdir(parents=True, exist_ok=True)
        p.write_spec()
        self._lock = open(p.state_dir / "update.lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(self.control, ignore_errors=True)
        self.control.mkdir(parents=True)
        self._out = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            p.warm_command(control_dir=self.control),
            env=p.environment(),
            cwd=p.state_dir,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def update(self, mode: str = "", timeout: float = 1800) -> float:
        """Run one update (``""``, ``"streaming"`` or ``"full"``); returns its seconds; raises on failure.
        ``last_phases`` then holds when each phase of it ended (see ``spark.pipelines.warm_runner``)."""
        assert self.proc is not None
        self.n += 1
        (self.control / f"cmd-{self.n}").write_text(f"update {mode}")
        done = self.control / f"done-{self.n}"
        deadline = time.monotonic() + timeout
        while not done.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"warm pipeline exited (code {self.proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline update {self.n} did not finish in {timeout}s")
            time.sleep(0.1)
        status, seconds, *phases = done.read_text().split(maxsplit=2)
        if status != "COMPLETED":
            raise RuntimeError(f"pipeline update {self.n} {status}")
        self.last_phases = json.loads(phases[0]) if phases else {}
        return float(seconds)

    def __exit__(self, *exc) -> None:
        if self.proc:
            (self.control / f"cmd-{self.n + 1}").write_text("quit")
            try:
                self.proc.wait(timeout=60)
            except Exception:
                _terminate(self.proc)
        if self._out not in (None, subprocess.DEVNULL):
            self._out.close()
        self._lock.close()
