"""The `incident` command as a client of the HTTP API: a signed-in person, never Temporal."""
