"""Application services: the bridge platform (application-service-api.md).

* :mod:`appservices.registration` — registration files: parsing, validation, namespace rules (pure).
* :mod:`appservices.service` — :class:`~appservices.service.AppServices`: as_token auth and identity
  assertion, exclusive namespaces, ``m.login.application_service``, alias/user queries, third-party
  look-ups; plugs into the accounts, aliases and profile services through their hooks.
* :mod:`appservices.pusher` — the distributor (streams → durable outbox) and per-service senders
  (outbox → ``PUT /_matrix/app/v1/transactions/{txnId}``, in order, with backoff).
* :mod:`appservices.client` — homeserver → application service HTTP.
* :mod:`appservices.store` — SQL (schema 0080_appservices.sql).
* :mod:`appservices.api` — client-server endpoints: ping, network directories, ``/thirdparty``, admin view.
"""
