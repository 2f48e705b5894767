"""``python -m sandbox``: serve the emulators on ``CR_SANDBOX_HOST``:``CR_SANDBOX_PORT``, keeping
their state in ``CR_SANDBOX_STATE_FILE`` (default ``<data_dir>/sandbox-state.json``)."""

from __future__ import annotations

import sys

from sandbox.persist import SandboxStateError
from sandbox.server import SandboxServer
from settings import get_settings


def main() -> None:
    settings = get_settings()
    try:
        server = SandboxServer(settings, settings.sandbox_host, settings.sandbox_port)
    except SandboxStateError as err:
        print(f"python -m sandbox: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    kept = settings.effective_sandbox_state_file or "memory only"
    print(f"sandbox emulators on {server.url} (state: {server.url}/_sandbox/state, kept in {kept})",
          flush=True)  # fmt: skip
    try:
        server.run()
    finally:
        server.close()


if __name__ == "__main__":
    main()
