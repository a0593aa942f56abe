"""System prerequisites: Debian packages installed when missing, and clear errors otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from launcher.errors import PrerequisiteError

# Debian package -> a file that proves it is installed
DEBIAN_PACKAGES = {
    "redis-server": Path("/usr/bin/redis-server"),
    "postgresql": Path("/usr/lib/postgresql/15/bin/postgres"),
    # the control plane's browser tests drive Debian's chromium (nothing downloads a browser)
    "chromium": Path("/usr/bin/chromium"),
    "chromium-driver": Path("/usr/bin/chromedriver"),
}


def missing_packages(packages: dict[str, Path] = DEBIAN_PACKAGES) -> list[str]:
    return [name for name, probe in packages.items() if not probe.exists()]


def install_packages(names: list[str]) -> None:
    if not names:
        return
    if shutil.which("apt-get") is None:
        raise PrerequisiteError(
            f"missing system packages: {', '.join(names)}", "install them with your OS package manager"
        )
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run([*prefix, "apt-get", "update", "-qq"], env=env, capture_output=True, text=True)
    if update.returncode != 0:
        raise PrerequisiteError(
            f"apt-get update failed: {update.stderr[-500:]}", "check network access to Debian mirrors"
        )
    proc = subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *names],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise PrerequisiteError(
            f"apt-get install {' '.join(names)} failed:\n{proc.stderr[-1000:]}",
            f"sudo apt-get install -y {' '.join(names)}",
        )


def check_tools() -> None:
    if shutil.which("java") is None:
        raise PrerequisiteError(
            "Java 17+ is not installed (Kafka and Spark need it)", "sudo apt-get install -y openjdk-17-jre-headless"
        )
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major < 17:
        raise PrerequisiteError(
            f"Java 17+ is required, found: {out.splitlines()[0] if out else 'unknown'}",
            "install openjdk-17 and put it first on PATH (or set JAVA_HOME)",
        )
    if shutil.which("mvn") is None:
        raise PrerequisiteError(
            "Maven (mvn) is not installed (it resolves Kafka/Spark jars)", "sudo apt-get install -y maven"
        )
