"""JVM dependencies resolved from Maven Central with `mvn`, cached under ``PA_CACHE_DIR`` (``.cache/``).

Two classpaths: the Kafka broker's (the launcher's), and the extra jars every local SparkSession gets
(Kafka connector and Delta). Resolution is idempotent: a stamp holds the pom's hash, so a warm run
does nothing. It lives with the Spark code because Spark needs it at every session start and must not
depend on the launcher; the launcher uses it from here.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pyspark

from payments_core.settings import REPO_ROOT, CommonSettings

POMS = {"kafka": REPO_ROOT / "launcher/maven/kafka/pom.xml", "spark": REPO_ROOT / "launcher/maven/spark/pom.xml"}
_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-\d[\w.\-]*\.jar$")


class PrerequisiteError(RuntimeError):
    """Something the platform needs is missing; ``fix`` says what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix


def default_cache_dir() -> Path:
    return CommonSettings().cache_dir


def jar_dir(name: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "jars" / name


def resolve(name: str, cache_dir: Path | None = None) -> Path:
    """Copy the pom's runtime dependencies into ``.cache/jars/<name>`` unless already there."""
    cache = cache_dir or default_cache_dir()
    pom = POMS[name]
    target = jar_dir(name, cache)
    stamp = target / ".pom-sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return target
    if shutil.which("mvn") is None:
        raise PrerequisiteError("Maven (mvn) is not installed", "apt-get install -y maven")
    if target.exists():
        shutil.rmtree(target)
    cmd = [
        "mvn",
        "-q",
        "-B",
        f"-Dmaven.repo.local={cache / 'm2'}",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrerequisiteError(
            f"Maven could not resolve {pom.relative_to(REPO_ROOT)}:\n{proc.stdout[-2000:]}",
            "check network access to Maven Central, then `make jars`",
        )
    stamp.write_text(digest)
    return target


def _artifact(jar: Path) -> str:
    match = _VERSIONED_JAR.match(jar.name)
    return match.group("artifact") if match else jar.stem


def spark_jars(cache_dir: Path | None = None) -> list[Path]:
    """Jars to hand to a local SparkSession: the connector jars minus what pyspark already ships
    (its own Hadoop, Jackson, Scala, Parquet... must win, or the JVM gets two copies)."""
    shipped = {_artifact(p) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    folder = resolve("spark", cache_dir)
    return sorted(
        p
        for p in folder.glob("*.jar")
        # Jackson modules must match Spark's own Jackson version, so Spark's are the only ones.
        if _artifact(p) not in shipped and not p.name.startswith("jackson-")
    )


def kafka_classpath(cache_dir: Path | None = None) -> str:
    return str(resolve("kafka", cache_dir) / "*")
