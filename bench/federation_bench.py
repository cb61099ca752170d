"""Federation benchmark of issue 5: a remote join into a big room, and an inbound burst of 50 PDUs,
with uzel and Synapse as the joining server J against the same resident server R.

    .venv/bin/python -m bench.federation_bench [--engine sqlite|postgres] [--scale small|full]
                                               [--residents synapse,uzel] [--json [PATH]]

Every server is a fresh process on loopback (bench/servers.py, plus a federation listener with a
self-signed TLS certificate, certificate checks off, loopback allowed; server names are
``127.0.0.1:<federation port>``, as in tests/interop/test_synapse_federation.py). For each resident
kind (Synapse first: the joining side is then the only variable; then uzel) one R is started
together with a fresh uzel J and a fresh Synapse J, and per room (``rooms`` repeats):

1. set-up, not timed: R creates a public room and ``members - 1`` users registered on R through its
   shared-secret registration (``/_synapse/admin/v1/register``) join it, so the room's state is
   ``members`` membership events plus the creation events;
2. **remote join**, per J (alternating which J goes first, per room): J's user calls
   ``POST /join/{roomId}?via=R``; measured: the time to the 200, and the time until the room shows in
   ``rooms.join`` of J's user's long-polling ``/sync`` (no filter: the whole state arrives, as for a
   client without lazy-loading; Synapse leaves a partial-state room out of /sync until its background
   state resync is done, so this is the time until J is really in the room). J's VmRSS/VmHWM
   (/proc/PID/status) before the join and after the room showed in /sync;
3. **inbound PDUs**: ``pdus`` (50) messages are sent on R by ``senders`` members concurrently (a burst);
   R's federation sender delivers them to J in transactions of its choosing (at most 50 PDUs each);
   measured: the time from the first send until J's user's /sync (timeline limit 100) has shown all
   of them, and from the last send's 200 until then. Then the same again with R's traffic to J held
   by a relay (``HoldProxy``: J's server name names the relay's port) while R sends, and released
   1 s after the last send: R's sender has queued the burst and delivers it as one transaction of
   49 PDUs after the 1 that was in flight (seen in uzel's ``federation_received_txns``), which is the
   issue's "receiving a transaction of 50 PDUs"; timed from the release until J's /sync has shown
   all 50. Then J's user leaves the room (not timed), so the next J gets its bursts alone.

Ratios are how many times better uzel is (Synapse's time or memory / uzel's). Every wait has a
count and a time bound; servers are stopped by their own PIDs.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass

import yaml

from bench import servers as srv
from bench.load import ApiError, Matrix, User, gather_limited, make_client, q
from homeserver.cli import registration_mac, write_self_signed_certificate

KINDS = ("uzel", "synapse")
SETUP_CONCURRENCY = 8
PASSWORD = "bench-password-1"
TIMELINE_FILTER = {"room": {"timeline": {"limit": 100}}}
IDLE_SETTLE_S = 3.0


def log(msg: str) -> None:
    print(f"[fedbench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class FedScale:
    name: str
    members: int  # members of the room on R (its state: this many m.room.member events + ~6)
    rooms: int  # repeats: each J joins this many rooms, one after another
    pdus: int = 50  # messages of the inbound burst
    senders: int = 5  # R users sending the burst concurrently
    join_timeout: float = 300.0  # bound of POST /join on J
    sync_timeout: float = 600.0  # bound from POST /join until the room is in J's /sync
    burst_timeout: float = 120.0  # bound from the first send until all PDUs are in J's /sync


SCALES = {
    "small": FedScale("small", members=200, rooms=2, join_timeout=120, sync_timeout=300, burst_timeout=60),
    "full": FedScale("full", members=1000, rooms=2),
}


# --- servers with a federation listener -----------------------------------------------------------

FEDERATION_SETTINGS = {
    "federation_verify_certificates": False,  # self-signed certificates on loopback
    "ip_range_whitelist": ["127.0.0.0/8"],
    "allow_public_rooms_over_federation": True,
}


class _Federating:
    """Mixin: a TLS federation port, a server name ``127.0.0.1:<port>`` and a self-signed certificate.
    A joining server's name names the port of its ``HoldProxy`` instead (``name_port``), so that
    what R sends it passes the proxy."""

    def _init_federation(self, name_port: int | None = None) -> None:
        self.fed_port = srv.free_port()
        self.server_name = f"127.0.0.1:{name_port or self.fed_port}"
        self.tls_cert = os.path.join(self.workdir, "tls.crt")
        self.tls_key = os.path.join(self.workdir, "tls.key")


class FedSynapse(_Federating, srv.SynapseServer):
    def __init__(self, workdir: str, database: srv.Database, venv: str, name_port: int | None = None):
        super().__init__(workdir, database, venv)
        self._init_federation(name_port)

    def config(self) -> dict:
        config = super().config()
        config["server_name"] = self.server_name
        config["listeners"].append({
            "port": self.fed_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
            "x_forwarded": False, "resources": [{"names": ["federation"], "compress": False}]})
        config.update(FEDERATION_SETTINGS)
        config.update({
            "tls_certificate_path": self.tls_cert,
            "tls_private_key_path": self.tls_key,
            # Synapse refuses IP-literal server names in its deny list whatever the allow list says.
            "ip_range_blacklist": [],
        })
        return config

    def prepare(self) -> None:
        write_self_signed_certificate(self.server_name, self.tls_cert, self.tls_key)
        super().prepare()


class FedUzel(_Federating, srv.UzelServer):
    def __init__(self, workdir: str, database: srv.Database, name_port: int | None = None):
        super().__init__(workdir, database)
        self._init_federation(name_port)

    def prepare(self) -> None:
        """``uzel generate-config --self-signed-tls`` for the federation port, then the same patches
        as bench/servers.py ``UzelServer`` (open registration, no rate limits, presence off ...)."""
        if self.database.engine == "sqlite":
            os.makedirs(os.path.dirname(self.database.sqlite_path), exist_ok=True)
        self.config_path = os.path.join(self.workdir, "homeserver.yaml")
        subprocess.run([self.python, "-m", "homeserver.cli", "generate-config", "--server-name", self.server_name,
                        "--config-path", self.config_path, "--data-dir", self.workdir,
                        "--client-port", str(self.port), "--federation-port", str(self.fed_port),
                        "--bind-address", "127.0.0.1", "--public-baseurl", self.base_url + "/",
                        "--database-url", self.database.url(), "--self-signed-tls", "--force"],
                       cwd=srv.REPO_ROOT, check=True, capture_output=True, timeout=120)
        with open(self.config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        config.update({
            "registration_shared_secret": self.shared_secret,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "enable_ratelimiting": False,
            "presence": {"enabled": False},
            "trusted_key_servers": [],
            "report_stats": False,
            "url_preview_enabled": False,
            "bcrypt_rounds": srv.BCRYPT_ROUNDS,
            "log_level": "WARNING",
            "log_file": self.log_path,
            **FEDERATION_SETTINGS,
        })
        for listener in config.get("listeners") or []:
            listener["bind_addresses"] = ["127.0.0.1"]
        with open(self.config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=srv.REPO_ROOT, capture_output=True,
                                text=True).stdout.strip()
        self.version = f"dev ({commit})" if commit else "dev"


def make_server(kind: str, role: str, workdir: str, provider: srv.DatabaseProvider, venv: str | None,
                name_port: int | None = None):
    """A fresh server of ``kind`` for ``role`` ("R" or "J"), in its own directory and database."""
    subdir = os.path.join(workdir, f"{role}-{kind}")
    os.makedirs(subdir, exist_ok=True)
    db = provider.new_database(f"{role}-{kind}")
    if kind == "synapse":
        return FedSynapse(subdir, db, venv, name_port)
    return FedUzel(subdir, db, name_port)


class HoldProxy:
    """A TCP relay on 127.0.0.1 in front of a joining server's federation port (bytes pass through
    untouched: TLS is end to end). ``hold()`` stops relaying towards the server, so R's request in
    flight waits and R's sender queues what follows; ``release()`` relays again. This makes R send a
    burst as one transaction of (up to) 50 PDUs after the one that was in flight."""

    def __init__(self, port: int, target_port: int):
        self.port, self.target_port = port, target_port
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), timeout=10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        inbound = asyncio.create_task(self._pump(reader, up_writer, gated=True))
        outbound = asyncio.create_task(self._pump(up_reader, writer, gated=False))
        self._tasks.update((inbound, outbound))
        await asyncio.wait((inbound, outbound), return_when=asyncio.FIRST_COMPLETED)
        for t in (inbound, outbound):
            t.cancel()
            self._tasks.discard(t)
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader, writer, gated: bool) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if gated and not self._open.is_set():
                await self._open.wait()
            writer.write(data)
            await writer.drain()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()


# --- client helpers ---------------------------------------------------------------------------------

async def register(m: Matrix, shared_secret: str, localpart: str) -> User:
    """Shared-secret registration (``/_synapse/admin/v1/register``, served by both servers)."""
    body = await m.call("GET", "/_synapse/admin/v1/register", prefix="", expect="nonce")
    mac = registration_mac(shared_secret, body["nonce"], localpart, PASSWORD, False)
    body = await m.call("POST", "/_synapse/admin/v1/register", prefix="", expect="access_token",
                        json_body={"nonce": body["nonce"], "username": localpart, "password": PASSWORD,
                                   "admin": False, "mac": mac})
    return User(body["user_id"], body["access_token"], localpart)


async def register_many(m: Matrix, shared_secret: str, prefix: str, n: int) -> list[User]:
    return await gather_limited([lambda i=i: register(m, shared_secret, f"{prefix}{i}") for i in range(n)],
                                SETUP_CONCURRENCY)


async def remote_join(m: Matrix, user: User, room_id: str, via: str, timeout: float) -> None:
    await m.call("POST", f"/join/{q(room_id)}", token=user.token, json_body={}, expect="room_id",
                 params={"via": via, "server_name": via}, timeout=timeout, label="/join/{roomId}")


async def wait_in_sync(m: Matrix, user: User, since: str, room_id: str, deadline: float,
                       sync_filter=None) -> tuple[float, str]:
    """Long-poll ``/sync`` from ``since`` until ``room_id`` is in ``rooms.join``; returns (the
    perf_counter time of that response, its next_batch). Bounded by ``deadline``; request errors
    are retried (at most 5) until then."""
    failures = 0
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError(f"{room_id} not in /sync before the deadline")
        try:
            body = await m.sync(user, since=since, timeout_ms=int(min(10.0, remaining) * 1000), filter=sync_filter,
                                request_timeout=min(10.0, remaining) + 60)
        except ApiError:
            failures += 1
            if failures > 5:
                raise
            await asyncio.sleep(0.5)
            continue
        now = time.perf_counter()
        since = body["next_batch"]
        if room_id in body.get("rooms", {}).get("join", {}):
            return now, since


def _mem(server: srv.ServerProcess) -> dict:
    kb = server.memory_kb()
    return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "hwm_mb": round(kb["VmHWM"] / 1024, 1)} if kb else {}


# --- the scenarios ----------------------------------------------------------------------------------

@dataclass
class Resident:
    server: srv.ServerProcess
    m: Matrix
    owner: User
    members: list[User]
    warmup_room: str


@dataclass
class Joiner:
    kind: str
    server: srv.ServerProcess
    m: Matrix
    user: User
    since: str


async def setup_resident(server, m: Matrix, scale: FedScale, tag: str) -> Resident:
    t0 = time.monotonic()
    owner = await register(m, server.shared_secret, f"owner{tag}")
    members = await register_many(m, server.shared_secret, f"m{tag}x", scale.members - 1)
    warmup = await m.create_room(owner, preset="public_chat", name="warm-up")
    log(f"R ({server.name}): {len(members) + 1} users registered in {time.monotonic() - t0:.1f} s")
    return Resident(server, m, owner, members, warmup)


async def build_room(r: Resident, scale: FedScale, k: int, room_version: str) -> str:
    t0 = time.monotonic()
    room_id = await r.m.create_room(r.owner, preset="public_chat", room_version=room_version,
                                    name=f"federation bench {k}")
    await gather_limited([lambda u=u: r.m.join(u, room_id) for u in r.members], SETUP_CONCURRENCY)
    log(f"R: room {k} {room_id} with {len(r.members) + 1} members built in {time.monotonic() - t0:.1f} s")
    return room_id


async def setup_joiner(kind: str, server, m: Matrix, r: Resident, tag: str) -> Joiner:
    """J's user, and a warm-up join into a small room on R (not timed): keys fetched both ways and
    connections made before anything is measured."""
    user = await register(m, server.shared_secret, f"joiner{tag}")
    body = await m.sync(user)
    deadline = time.perf_counter() + 120
    await remote_join(m, user, r.warmup_room, r.server.server_name, timeout=120)
    _, since = await wait_in_sync(m, user, body["next_batch"], r.warmup_room, deadline)
    return Joiner(kind, server, m, user, since)


async def measure_join(j: Joiner, r: Resident, room_id: str, scale: FedScale) -> dict:
    """POST /join -> 200, and -> the room in J's /sync; J's memory before and after."""
    before = _mem(j.server)
    start = time.perf_counter()
    watcher = asyncio.create_task(wait_in_sync(j.m, j.user, j.since, room_id, start + scale.sync_timeout))
    try:
        await remote_join(j.m, j.user, room_id, r.server.server_name, timeout=scale.join_timeout)
        joined = time.perf_counter()
        in_sync, j.since = await watcher
    finally:
        if not watcher.done():
            watcher.cancel()
    after = _mem(j.server)
    return {"join_s": round(joined - start, 3), "join_sync_s": round(max(in_sync, joined) - start, 3),
            "rss_before_mb": before.get("rss_mb"), "rss_after_mb": after.get("rss_mb"),
            "rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 1) if before and after else None,
            "hwm_after_join_mb": after.get("hwm_mb")}


HOLD_SETTLE_S = 1.0  # after the last send, before a held link is released: R's sender has queued all


async def measure_burst(j: Joiner, r: Resident, room_id: str, scale: FedScale, held: HoldProxy | None = None,
                        prefix: str = "") -> dict:
    """``pdus`` messages sent on R by ``senders`` users at once; the time until J's /sync shows all.
    With ``held``: R->J traffic is held during the sends and released ``HOLD_SETTLE_S`` after the
    last one, so J gets the burst as one transaction (after the one in flight); timed from the release."""
    seen: dict[str, float] = {}
    expected: set[str] = set()
    sends_done = asyncio.Event()
    deadline = time.perf_counter() + scale.burst_timeout
    state = {"since": j.since, "syncs": 0}

    async def watch() -> None:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"J's /sync showed {len(expected & seen.keys())} of {scale.pdus} PDUs "
                                   f"within {scale.burst_timeout:.0f} s")
            wait = 0.0 if sends_done.is_set() and expected <= seen.keys() else min(5.0, remaining)
            body = await j.m.sync(j.user, since=state["since"], timeout_ms=int(wait * 1000), filter=TIMELINE_FILTER,
                                  request_timeout=wait + 60)
            now = time.perf_counter()
            state["since"] = body["next_batch"]
            state["syncs"] += 1
            room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
            for event in (room.get("timeline") or {}).get("events", []):
                seen.setdefault(event.get("event_id"), now)
            if sends_done.is_set() and expected <= seen.keys():
                return

    watcher = asyncio.create_task(watch())
    senders = r.members[:scale.senders] or [r.owner]
    try:
        if held is not None:
            held.hold()
        start = time.perf_counter()
        ids = await gather_limited(
            [lambda i=i: r.m.send_message(senders[i % len(senders)], room_id, f"{prefix}burst {i}")
             for i in range(scale.pdus)], len(senders))
        sent = time.perf_counter()
        expected.update(ids)
        if held is not None:
            early = len(expected & seen.keys())
            await asyncio.sleep(HOLD_SETTLE_S)
            start = sent = time.perf_counter()
            held.release()
        sends_done.set()
        await watcher
    finally:
        if held is not None:
            held.release()
        if not watcher.done():
            watcher.cancel()
    j.since = state["since"]
    last_seen = max(seen[e] for e in expected)
    mem = _mem(j.server)
    if held is not None:
        return {"held_s": round(last_seen - start, 3), "held_early": early, "hwm_after_held_mb": mem.get("hwm_mb")}
    return {"burst_s": round(last_seen - start, 3), "after_last_send_s": round(max(0.0, last_seen - sent), 3),
            "r_send_s": round(sent - start, 3), "syncs": state["syncs"], "hwm_after_burst_mb": mem.get("hwm_mb"),
            "rss_after_burst_mb": mem.get("rss_mb")}


async def leave(j: Joiner, room_id: str) -> None:
    await j.m.call("POST", f"/rooms/{q(room_id)}/leave", token=j.user.token, json_body={}, timeout=120,
                   label="/rooms/{roomId}/leave")


async def run_resident(resident_kind: str, joiner_kinds: list[str], scale: FedScale, args, workdir: str,
                       provider: srv.DatabaseProvider, venv: str | None, flip: bool) -> dict:
    """One resident R of ``resident_kind`` and a fresh J of each joiner kind; returns the samples."""
    started: list[srv.ServerProcess] = []
    clients: list[Matrix] = []
    proxies: dict[str, HoldProxy] = {}
    tag = secrets.token_hex(2)
    out: dict = {"resident": resident_kind, "joiners": {k: {"samples": []} for k in joiner_kinds}}
    try:
        servers = {}
        for role, kind in [("R", resident_kind)] + [("J", k) for k in joiner_kinds]:
            name_port = srv.free_port() if role == "J" else None
            server = make_server(kind, f"{role}{resident_kind[0]}", workdir, provider, venv, name_port)
            if role == "J":
                proxies[kind] = HoldProxy(name_port, server.fed_port)
                await proxies[kind].start()
            log(f"starting {role} {kind} ({server.server_name}) ...")
            server.start()
            started.append(server)
            servers[(role, kind)] = server
            log(f"{role} {kind} {server.version} up, pid {server.pid}")
        time.sleep(IDLE_SETTLE_S)
        idle = {k: _mem(servers[("J", k)]) for k in joiner_kinds}

        def client(server):
            m = Matrix(make_client(server.base_url, max_connections=32))
            clients.append(m)
            return m

        r_server = servers[("R", resident_kind)]
        r = await setup_resident(r_server, client(r_server), scale, tag)
        joiners = {}
        for k in joiner_kinds:
            js = servers[("J", k)]
            joiners[k] = await setup_joiner(k, js, client(js), r, tag)
            out["joiners"][k]["idle_rss_mb"] = idle[k].get("rss_mb")
            out["joiners"][k]["warm_rss_mb"] = _mem(js).get("rss_mb")
        out["r_version"] = r_server.version
        out["versions"] = {k: servers[("J", k)].version for k in joiner_kinds}
        for k in range(scale.rooms):
            room_id = await build_room(r, scale, k, args.room_version)
            order = list(joiner_kinds) if (k % 2 == 0) != flip else list(reversed(joiner_kinds))
            for kind in order:
                j = joiners[kind]
                sample: dict = {"room": k}
                try:
                    if not j.server.alive():
                        raise RuntimeError("J is not running")
                    log(f"room {k}: {kind} joins ...")
                    sample.update(await measure_join(j, r, room_id, scale))
                    log(f"room {k}: {kind} joined in {sample['join_s']:.2f} s, in /sync after "
                        f"{sample['join_sync_s']:.2f} s; RSS {sample['rss_before_mb']} -> {sample['rss_after_mb']} MB")
                    await asyncio.sleep(1.0)
                    sample.update(await measure_burst(j, r, room_id, scale))
                    log(f"room {k}: {scale.pdus} PDUs on {kind} in {sample['burst_s']:.2f} s "
                        f"({sample['after_last_send_s']:.2f} s after the last send; R sent in {sample['r_send_s']:.2f} s)")
                    await asyncio.sleep(1.0)
                    sample.update(await measure_burst(j, r, room_id, scale, held=proxies[kind], prefix="held "))
                    log(f"room {k}: {scale.pdus} held PDUs on {kind} in {sample['held_s']:.2f} s after the release "
                        f"({sample['held_early']} arrived before it)")
                    await leave(j, room_id)
                    await asyncio.sleep(1.0)
                except Exception as e:  # noqa: BLE001 - one failed sample must not end the run
                    log(f"room {k} on {kind} failed: {e!r}\n{traceback.format_exc(limit=4)}\n{j.server.log_tail(15)}")
                    sample["error"] = str(e)[:300] or type(e).__name__
                out["joiners"][kind]["samples"].append(sample)
        for k in joiner_kinds:
            out["joiners"][k]["end"] = _mem(servers[("J", k)])
    finally:
        for m in clients:
            await m.http.close()
        for server in reversed(started):
            server.stop()
        for proxy in proxies.values():
            await proxy.stop()
    return out


# --- the report -------------------------------------------------------------------------------------

def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


# (key in a sample, row label, unit)
ROW_SPECS = [
    ("join_s", "remote join ({n} members): POST /join -> 200", "s"),
    ("join_sync_s", "remote join ({n} members): POST /join -> room in J's /sync", "s"),
    ("rss_before_mb", "J RSS before the join", "MB"),
    ("rss_after_mb", "J RSS after the join (room in /sync)", "MB"),
    ("rss_growth_mb", "J RSS growth from the join", "MB"),
    ("hwm_after_join_mb", "J peak RSS (VmHWM) after the join", "MB"),
    ("burst_s", "{p} PDUs sent on R -> all in J's /sync (from 1st send)", "s"),
    ("after_last_send_s", "{p} PDUs: last send's 200 -> all in J's /sync", "s"),
    ("held_s", "{p} PDUs queued on R (link held), released -> all in J's /sync", "s"),
    ("hwm_after_held_mb", "J peak RSS (VmHWM) at the end", "MB"),
]


def build_rows(results: list[dict], scale: FedScale) -> list[dict]:
    rows = []
    for res in results:
        resident = res["resident"]
        for key, label, unit in ROW_SPECS:
            name = f"[R={resident}] " + label.format(n=scale.members, p=scale.pdus)
            cells = {}
            for kind, data in res["joiners"].items():
                good = [s.get(key) for s in data["samples"] if "error" not in s and s.get(key) is not None]
                errors = [s["error"] for s in data["samples"] if "error" in s]
                cells[kind] = {"value": _median(good), "samples": good, "errors": len(errors),
                               "first_error": errors[0] if errors else None}
            u, s = (cells.get("uzel") or {}).get("value"), (cells.get("synapse") or {}).get("value")
            rows.append({"name": name, "unit": unit, "results": cells,
                         "ratio": round(s / u, 2) if u and s else None})
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "error"
    if unit == "MB":
        return f"{value:.0f} MB" if abs(value) >= 20 else f"{value:.1f} MB"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def render(report: dict) -> str:
    kinds = report["meta"]["joiners"]
    headers = ["scenario (J = joining server)"] + kinds + (["ratio"] if set(KINDS) <= set(kinds) else [])
    lines = []
    for row in report["rows"]:
        line = [row["name"]]
        for k in kinds:
            c = row["results"].get(k) or {}
            text = _fmt(c.get("value"), row["unit"])
            if len(c.get("samples") or []) > 1:
                text += " (" + " / ".join(_fmt(v, row["unit"]) for v in c["samples"]) + ")"
            if c.get("errors"):
                text += f" [{c['errors']} err]"
            line.append(text)
        if len(headers) > len(kinds) + 1:
            line.append(f"{row['ratio']:.1f}x" if row.get("ratio") else "-")
        lines.append(line)
    widths = [max(len(str(x[i])) for x in [headers] + lines) for i in range(len(headers))]
    fmt = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), "-+-".join("-" * w for w in widths)] + [fmt(x) for x in lines])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.federation_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--scale", choices=tuple(SCALES), default="small")
    p.add_argument("--residents", default="synapse,uzel", help="resident server kinds, in order (default synapse,uzel)")
    p.add_argument("--joiners", default="uzel,synapse", help="joining server kinds (default uzel,synapse)")
    p.add_argument("--members", type=int, help="override the room size of the scale")
    p.add_argument("--rooms", type=int, help="override the number of rooms (repeats) of the scale")
    p.add_argument("--room-version", default="12")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="also write the results as JSON to PATH (no PATH: to stdout, after the table)")
    p.add_argument("--workdir", help="where server data goes (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, databases)")
    p.add_argument("--synapse-venv", help=f"Synapse's venv (default $UZEL_SYNAPSE_VENV or {srv.DEFAULT_SYNAPSE_VENV})")
    args = p.parse_args(argv)
    for attr in ("residents", "joiners"):
        kinds = [k.strip() for k in getattr(args, attr).split(",") if k.strip()]
        if not kinds or any(k not in KINDS for k in kinds):
            p.error(f"--{attr}: choose from {KINDS}")
        setattr(args, attr, kinds)
    args.joiners = sorted(set(args.joiners), key=KINDS.index)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    scale = SCALES[args.scale]
    overrides = {k: v for k, v in (("members", args.members), ("rooms", args.rooms)) if v}
    if overrides:
        scale = FedScale(**{**asdict(scale), **overrides})
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="uzel-fedbench-")
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()
    provider = srv.DatabaseProvider(args.engine, workdir)
    results = []
    try:
        need_synapse = "synapse" in args.residents + args.joiners
        venv = srv.ensure_synapse_venv(args.synapse_venv, log=log) if need_synapse else None
        provider.start()
        bound = 3600.0 if scale.name == "full" else 900.0
        for i, resident in enumerate(args.residents):
            log(f"--- resident {resident}, {scale.members} members, {scale.rooms} room(s)")
            try:
                results.append(asyncio.run(asyncio.wait_for(
                    run_resident(resident, args.joiners, scale, args, workdir, provider, venv, flip=i % 2 == 1),
                    timeout=bound)))
            except Exception as e:  # noqa: BLE001
                log(f"resident {resident} failed: {e!r}\n{traceback.format_exc(limit=4)}")
                results.append({"resident": resident, "error": str(e)[:300],
                                "joiners": {k: {"samples": [{"error": str(e)[:300] or type(e).__name__}]}
                                            for k in args.joiners}})
    finally:
        provider.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"kept {workdir}")
    report = {
        "rows": build_rows(results, scale),
        "residents": results,
        "meta": {
            "joiners": args.joiners, "residents": args.residents, "engine": args.engine, "scale": args.scale,
            "scale_params": asdict(scale), "room_version": args.room_version,
            "versions": {k: v for res in results for k, v in (res.get("versions") or {}).items()},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(time.monotonic() - started, 1),
        },
    }
    print()
    print(f"federation: uzel vs Synapse as the joining server J — engine {args.engine}, scale {args.scale} "
          f"({scale.members} members, {scale.pdus} PDUs, {scale.rooms} room(s); median, samples in brackets), "
          + ", ".join(f"{k} {v}" for k, v in report["meta"]["versions"].items())
          + f", {os.cpu_count()} CPUs, {report['meta']['wall_s']:.0f} s")
    print(render(report))
    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text)
            log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
