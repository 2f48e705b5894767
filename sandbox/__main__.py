"""``python -m sandbox``: serve the emulators on ``CR_SANDBOX_HOST``:``CR_SANDBOX_PORT``."""

from __future__ import annotations

from sandbox.server import SandboxServer
from settings import get_settings


def main() -> None:
    settings = get_settings()
    server = SandboxServer(settings, settings.sandbox_host, settings.sandbox_port)
    print(f"sandbox emulators on {server.url} (state: {server.url}/_sandbox/state)", flush=True)
    server.run()


if __name__ == "__main__":
    main()
