"""Install Twisted's reactor without loading pyOpenSSL until TLS is used (issue 9, server memory).

Importing ``twisted.internet.reactor`` imports ``twisted.internet.posixbase``, which imports
``twisted.protocols.tls`` and ``twisted.internet.ssl`` just to find out whether TLS is available.
That pulls in pyOpenSSL, ``cryptography`` (a large native library), ``service_identity`` and their
dependencies: about 13 MB of resident memory in a process that serves plain HTTP behind a proxy.

:func:`install` imports the reactor with pyOpenSSL hidden, then hands the reactor base lazy
stand-ins for those two modules, so ``reactor.listenSSL`` / ``reactor.connectSSL`` import them on
first use and behave as before. Outbound TLS (``twisted.web.client.Agent``, treq) never went
through those module globals and imports what it needs itself.

The one thing not restored: ``startTLS`` on an already-open plain TCP connection (``tcp.Connection``
is built without Twisted's TLS mixins when pyOpenSSL is hidden). uzel never upgrades a connection.
"""
from __future__ import annotations

import importlib
import sys

_HIDDEN = "OpenSSL"


class _HideModule:
    """A meta-path entry making ``import OpenSSL`` (and submodules) fail while it is installed."""

    def find_spec(self, name, path=None, target=None):
        if name == _HIDDEN or name.startswith(_HIDDEN + "."):
            raise ImportError(f"{name} hidden while the reactor is imported (homeserver.lean_reactor)")
        return None


class _LazyModule:
    """Stands in for a module; imports it on the first attribute access."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


def install():
    """Import and return the default reactor, deferring pyOpenSSL to the first TLS use.

    Does nothing special (returns the reactor) when the reactor or pyOpenSSL is already imported."""
    if "twisted.internet.reactor" in sys.modules or _HIDDEN in sys.modules:
        from twisted.internet import reactor
        return reactor
    hider = _HideModule()
    sys.meta_path.insert(0, hider)
    try:
        from twisted.internet import reactor
    finally:
        sys.meta_path.remove(hider)
    from twisted.internet import posixbase
    if posixbase.tls is None and posixbase.ssl is None:
        from twisted.internet.interfaces import IReactorSSL
        from zope.interface import classImplements
        posixbase.tls = _LazyModule("twisted.protocols.tls")
        posixbase.ssl = _LazyModule("twisted.internet.ssl")
        classImplements(posixbase.PosixReactorBase, IReactorSSL)
    return reactor
