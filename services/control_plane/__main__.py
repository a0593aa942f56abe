"""`python -m services.control_plane serve`."""
from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

cli = typer.Typer(help="payment-analysis control plane", no_args_is_help=True)


@cli.command()
def serve(host: Annotated[str, typer.Option()] = "127.0.0.1", port: Annotated[int, typer.Option()] = 8080) -> None:
    """Serve the control plane web app and API."""
    from services.control_plane.app import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@cli.callback()
def main() -> None:
    """payment-analysis control plane (keeps `serve` an explicit subcommand)."""


if __name__ == "__main__":
    cli()
