"""Auditors' tools: export, replay with today's code, and verification of the audit chain."""
