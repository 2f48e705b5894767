"""The embedded stack: the Temporal dev server, `incident up` and the demo."""
