"""How every short-lived process of critical-response ends: flush, then ``os._exit``.

Once a Temporal client or worker has run, the SDK's native threads can abort the interpreter's
teardown (temporalio/sdk-python issue 300); and a command that never loaded the SDK (the API's
clients, ``client/``) has nothing to tear down either, so every process ends here, with its exit
code, in the same way. Imports nothing of the project nor of the SDK: the lightest command can use
it (``connection`` re-exports it for the processes that reach Temporal).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """Flush stdout and stderr and end now with ``code``, skipping the interpreter's teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
