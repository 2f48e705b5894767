"""Who the system is when it speaks to an incident: the API's signing keys (``keys.py``)."""
