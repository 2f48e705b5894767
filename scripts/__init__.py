"""Maintenance scripts (recording replay histories)."""
