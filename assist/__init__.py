"""Assisted response (issue 14): the machine suggests, a person decides, both are recorded.

Triage suggestions (a local text model trained from the team's closed incidents, or an
OpenAI-compatible chat endpoint behind the same interface, with personal data removed first),
handover summaries from the records, and what-if SLA plans on the time-skipping test server.
"""
