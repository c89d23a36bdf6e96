"""Small stand-ins several test modules need: an adapter folder that is only its marker file, a free port."""

from __future__ import annotations

import socket
from pathlib import Path


def fake_adapter(folder: Path) -> Path:
    """A folder that the layout and the backends take for a trained adapter (its config, empty)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
