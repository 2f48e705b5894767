"""The web console: pages for commanders, Legal, auditors and the team lead, on the HTTP API."""
