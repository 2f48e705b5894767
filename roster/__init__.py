"""People, their roles and groups, on-call rotations and overrides, and personal API tokens."""
