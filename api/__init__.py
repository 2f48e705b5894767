"""The HTTP API: the one door for people and automation; authenticates, authorizes, forwards."""
