"""`python -m services.control_plane serve | init-admin | set-password`."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import select

from services.control_plane.app import create_app
from services.control_plane.db import User, make_engine, make_sessionmaker, migrate
from services.control_plane.security import ensure_admin, hash_password
from services.control_plane.settings import get_settings

cli = typer.Typer(help="payment-analysis control plane", no_args_is_help=True)


@cli.command()
def serve(host: Annotated[str, typer.Option()] = "127.0.0.1", port: Annotated[int, typer.Option()] = 8080) -> None:
    """Serve the control plane web app and API."""
    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@cli.command("init-admin")
def init_admin() -> None:
    """Migrate the database and create the first admin when there are no users. A generated password
    is printed once (only its hash is kept); PA_ADMIN_PASSWORD sets it instead."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    migrate(engine)
    with make_sessionmaker(engine)() as db:
        password = ensure_admin(db, settings)
    if password:
        typer.echo(f"sign in as: admin / {password}   (shown once; `make admin-password` sets a new one)")
    elif settings.admin_password.get_secret_value():
        typer.echo("sign in as: admin with PA_ADMIN_PASSWORD")
    else:
        typer.echo("sign in with your control-plane user (lost the admin password? `make admin-password`)")


@cli.command("set-password")
def set_password(
    username: Annotated[str, typer.Argument()] = "admin",
    role: Annotated[str, typer.Option(help="Role when the user is created: viewer | admin")] = "admin",
) -> None:
    """Set (or create) a user's password, asked on the terminal."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    migrate(engine)
    password = getpass.getpass(f"new password for {username}: ")
    if len(password) < 10:
        raise typer.BadParameter("at least 10 characters")
    with make_sessionmaker(engine)() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            db.add(User(username=username, password_hash=hash_password(password), role=role))
        else:
            user.password_hash = hash_password(password)
        db.commit()
    typer.echo(f"password of {username} set")


if __name__ == "__main__":
    cli()
