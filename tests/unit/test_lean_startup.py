"""Start-up memory (issue 9): ``uzel run`` registers every route without loading pyOpenSSL,
Pillow or treq, and TLS still works both ways once it is used (homeserver/lean_reactor.py).

The checks run in a fresh interpreter: this test process has long imported all of those."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HEAVY = ("OpenSSL", "cryptography", "PIL", "treq", "twisted.web.client", "twisted.internet.ssl")

_SCRIPT = textwrap.dedent("""
    import json, socket, ssl, sys, threading, urllib.request
    from homeserver import lean_reactor
    reactor = lean_reactor.install()
    from twisted.internet import defer, threads
    from homeserver.app import HomeServer
    from homeserver.protocol import signing
    from config.loader import parse_config

    data = sys.argv[1]
    heavy = sys.argv[2].split(",")

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    plain_port, tls_port = free_port(), free_port()
    signing.write_signing_key(data + "/signing.key", signing.generate_signing_key())
    config = parse_config({
        "server_name": "localhost",
        "listeners": [
            {"port": plain_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
             "resources": [{"names": ["client", "federation", "keys", "media"]}]},
            {"port": tls_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
             "resources": [{"names": ["client"]}]},
        ],
        "tls_certificate_path": data + "/tls.crt",
        "tls_private_key_path": data + "/tls.key",
        "database": {"name": "sqlite3", "args": {"database": data + "/homeserver.db"}},
        "signing_key_path": data + "/signing.key",
    }, config_dir=data)
    hs = HomeServer(config, reactor)
    hs.setup()
    result = {"after_setup": [m for m in heavy if m in sys.modules]}

    def fetch_in_thread(url):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    async def main():
        try:
            await hs.start()
            hs.listen()
            result["inbound_http"] = "versions" in await threads.deferToThread(
                fetch_in_thread, f"http://127.0.0.1:{plain_port}/_matrix/client/versions")
            result["inbound_tls"] = "versions" in await threads.deferToThread(
                fetch_in_thread, f"https://127.0.0.1:{tls_port}/_matrix/client/versions")
            # Outbound TLS through the reactor, the way federation and pushers connect.
            from twisted.web.client import Agent, readBody
            from homeserver.http.outbound import CheckedEndpointFactory, TlsPolicy
            agent = Agent.usingEndpointFactory(
                reactor, CheckedEndpointFactory(reactor, lambda a: True, TlsPolicy(verify=False)))
            response = await agent.request(b"GET", f"https://127.0.0.1:{tls_port}/_matrix/client/versions".encode())
            result["outbound_tls"] = "versions" in json.loads(await readBody(response))
        except Exception as e:
            result["error"] = repr(e)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()))
    reactor.run()
    print(json.dumps(result))
""")


def _run(tmp_path) -> dict:
    from homeserver.cli import write_self_signed_certificate  # here: it imports cryptography
    write_self_signed_certificate("localhost", str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path), ",".join(HEAVY)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_routes_register_without_openssl_pillow_or_treq_and_tls_works_on_first_use(tmp_path):
    result = _run(tmp_path)
    assert result.get("error") is None, result
    assert result["after_setup"] == [], f"imported while building the server: {result['after_setup']}"
    assert result["inbound_http"] is True
    assert result["inbound_tls"] is True
    assert result["outbound_tls"] is True
