"""Wires federation into the rest of the server at start-up (no routes of its own).

* the outbound queues: the pipeline's persist hook (federation/sender/queue.py) and, once the
  database is ready, the catch-up of destinations with queued transactions;
* ``MembershipService.remote_join/remote_knock/remote_leave/remote_invite``;
* ``AliasService.remote_resolver`` and ``ProfileService.remote_profile_fetcher``;
* EDUs in and out and remote key queries (federation/handlers/edus.py);
* ``PublicRoomListService.remote_lister``, the media repository's remote fetcher and
  ``SpaceHierarchyService.remote_summaries``;
* ``MessagesService.remote_backfill`` (/messages backfilling from other servers).
"""
from __future__ import annotations

from homeserver.client.profile import ProfileService
from homeserver.directory.aliases import AliasService
from homeserver.rooms.membership import MembershipService

from ..handlers.backfill import FederationBackfillHandler
from ..handlers.edus import FederationEduHandler
from ..handlers.membership import FederationMembershipHandler
from ..handlers.queries import FederationQueryHandler
from ..handlers.remote_reads import FederationMediaFetcher, RemoteDirectory
from ..handlers.spaces import FederationSpacesHandler
from ..sender import FederationSender


def register_routes(hs, router) -> None:
    sender = hs.get(FederationSender)
    sender.register()
    hs.on_start(sender.start)
    hs.get(FederationEduHandler).register()

    joins = hs.get(FederationMembershipHandler)
    membership = hs.get(MembershipService)
    membership.remote_join = joins.remote_join
    membership.remote_knock = joins.remote_knock
    membership.remote_leave = joins.remote_leave
    membership.remote_invite = joins.remote_invite

    queries = hs.get(FederationQueryHandler)
    hs.get(AliasService).remote_resolver = queries.resolve_remote_alias
    hs.get(ProfileService).remote_profile_fetcher = queries.fetch_remote_profile

    from homeserver.directory.public_rooms import PublicRoomListService
    from homeserver.media.repository import MediaRepository
    hs.get(PublicRoomListService).remote_lister = hs.get(RemoteDirectory).list_rooms
    hs.get(MediaRepository).set_remote_fetcher(hs.get(FederationMediaFetcher))

    from homeserver.directory.hierarchy import SpaceHierarchyService
    hs.get(SpaceHierarchyService).remote_summaries = hs.get(FederationSpacesHandler).remote_summary

    from homeserver.history.messages import MessagesService
    hs.get(MessagesService).remote_backfill = hs.get(FederationBackfillHandler).maybe_backfill
