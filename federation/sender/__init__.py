"""Outbound federation: one persistent transaction queue per destination.

``hs.get(FederationSender)`` (federation/sender/queue.py) is the service; see its docstring.
"""
from .queue import FederationSender, backoff_interval_ms

__all__ = ["FederationSender", "backoff_interval_ms"]
