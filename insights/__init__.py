"""The team lead's instruments, computed from the records and the roster (see each module)."""
