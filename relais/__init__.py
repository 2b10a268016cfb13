"""Relais: an event-driven bus for secure health document exchange in France.

This package holds the spine shared by every component: settings, topic
catalogue, record contracts (Avro codec), the encryption envelope, the local
broker runner, metrics and the command line. Stage logic lives in the
top-level packages ``producers``, ``streams``, ``consumers`` and ``mss_bridge``.
"""

__version__ = "0.1.0"
