"""Local emulators of Salesforce, PagerDuty, Slack, Twilio and SendGrid on loopback.

``make run``, the demo and the end-to-end tests point the integrations at this one server (the
settings' base URLs default to it), inspect what it received over ``GET /_sandbox/state`` and inject
faults over ``POST /_sandbox/faults``. Start it with ``python -m sandbox`` or, in tests, with
``sandbox.server.running_sandbox()``.
"""

from sandbox.app import create_app
from sandbox.server import SandboxServer, running_sandbox

__all__ = ["SandboxServer", "create_app", "running_sandbox"]
