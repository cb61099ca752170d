"""Accounts and sessions: registration, login, request authentication, User-Interactive
Authentication, devices, passwords and rate limits (client-server-api "Client Authentication",
"Account registration and management", "Device management").

Services, each built once with ``hs.get(Class)``:

* :class:`homeserver.accounts.auth.AuthService` — ``get_requester(request)`` for every endpoint,
  token issue, refresh and revocation.
* :class:`homeserver.accounts.ratelimit.Ratelimiter` — token buckets over the ``rc_*`` config.
* :class:`homeserver.accounts.uia.UiaService` — User-Interactive Authentication sessions.
* :class:`homeserver.accounts.registration.RegistrationService` — usernames, new accounts.
* :class:`homeserver.accounts.login.LoginService` — ``POST /login`` credential checks.
* :class:`homeserver.accounts.devices.DeviceService` — devices and their hooks.
* :class:`homeserver.accounts.account.AccountService` — password change, deactivation hooks.
"""
