"""The local API key: ``<data_dir>/scoring_api.key`` (mode 600, in the git-ignored data folder).

Auth is on in every mode. Where no key is configured (``PA_API_KEYS`` empty: a laptop, `make up`,
`docker compose` without a ``.env``), one random key is created once in the data folder, next to the
control plane's session secret, and printed once: by `make up` (the launcher creates it before the
services start and hands it to the control plane as ``PA_SCORING_API_KEY``), else in the scoring API's
log when the API itself had to create it. The scoring API accepts it besides ``PA_API_KEYS``.

Deliberately small and free of heavy imports: the launcher imports it.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("scoring_api")

KEY_FILE = "scoring_api.key"


def local_key_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / KEY_FILE


def read_local_key(data_dir: str | os.PathLike[str] | None) -> str | None:
    """The local key, or None when there is none (yet)."""
    if data_dir is None:
        return None
    try:
        key = local_key_path(data_dir).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return key or None


def ensure_local_key(data_dir: str | os.PathLike[str], *, announce: bool = False) -> tuple[str, bool]:
    """(the local key, whether this call created it). Creation is atomic (O_EXCL on a temporary file,
    then a hard link): concurrent starters agree on one key. ``announce``: log the new key once."""
    path = local_key_path(data_dir)
    existing = read_local_key(data_dir)
    if existing:
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: theirs wins
        except FileExistsError:
            return read_local_key(data_dir) or key, False
    finally:
        tmp.unlink(missing_ok=True)
    if announce:
        log.warning(
            "no API key configured (PA_API_KEYS): created the local API key %s (shown once; kept in %s). "
            "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            key,
            path,
        )
    return key, True
