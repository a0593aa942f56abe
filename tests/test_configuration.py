"""Every ``PA_`` variable any component reads is documented in the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from launcher.settings import PlatformSettings
from payments_core.settings import CommonSettings
from services.control_plane.settings import ControlPlaneSettings
from services.scoring_api.settings import Settings as ScoringApiSettings
from services.simulator.settings import SimulatorSettings
from services.stream_processor.settings import StreamProcessorSettings

REPO = Path(__file__).resolve().parents[1]
SETTINGS = (
    CommonSettings,
    PlatformSettings,
    ControlPlaneSettings,
    ScoringApiSettings,
    SimulatorSettings,
    StreamProcessorSettings,
)


def settings_variables() -> set[str]:
    names = set()
    for cls in SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def variables_read_directly() -> set[str]:
    """``os.environ`` / ``os.getenv`` reads of PA_ variables outside the settings classes."""
    pattern = re.compile(r"""(?:environ(?:\.get)?[\[(]|getenv\()\s*["'](PA_[A-Z0-9_]+)["']""")
    found = set()
    for folder in ("payments_core", "services", "spark", "launcher", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            found.update(pattern.findall(path.read_text()))
    return found


def test_every_variable_read_is_in_the_readme_configuration_table():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(PA_[A-Z0-9_]+)`", section))
    read = settings_variables() | variables_read_directly()
    assert len(read) > 40
    missing = sorted(read - documented)
    assert not missing, f"not in the README's configuration table: {missing}"
