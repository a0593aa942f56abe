"""The live decision stream for /decisions (being built)."""
from __future__ import annotations

from services.control_plane.settings import ControlPlaneSettings


class DecisionFeed:
    def __init__(self, settings: ControlPlaneSettings):
        self.settings = settings

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
