"""The front door to incidents (open, act, decide, query, list), its commands and rendering."""
