"""Payload encryption: everything Temporal stores for critical-response is sealed (AES-256-GCM).

``master.py``: the master keys (several, for rotation: the newest seals, every one opens), from
``CR_MASTER_KEYS`` or ``<data_dir>/master-keys.json``. ``keystore.py``: one data key per workflow
(an incident's payloads are sealed under its own key, wrapped by a master key; destroying that key
shreds them). ``codec.py``: the temporalio ``PayloadCodec`` that ``connection.DATA_CONVERTER``
carries to every client, worker and replayer.

On the ground floor with ``connection.py``: it imports only ``settings``.
"""
