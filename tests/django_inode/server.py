#!/usr/bin/env python3
"""iNode-like OAuth2 server (django-oauth-toolkit + DRF) for oauth-poller integration tests.

    python3 tests/django_inode/server.py --state-dir DIR [--port 0] [--access-ttl 3]
        [--refresh-ttl N] [--redirect-port 8765]

Migrates an SQLite DB in DIR, creates the owner user, its API key and two OAuth2
applications, serves on 127.0.0.1 and, once listening, prints one JSON line to stdout.
See README.md.
"""
import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

HERE = Path(__file__).resolve().parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--state-dir", required=True, help="directory for the SQLite DB and credentials.json")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port (default)")
    p.add_argument("--access-ttl", type=int, default=36000, help="access token lifetime, seconds")
    p.add_argument("--refresh-ttl", type=int, default=None,
                   help="DOT idle expiry: a refresh token dies this long after its access token "
                        "expired (default: never)")
    p.add_argument("--redirect-port", type=int, default=8765, help="port of the auth-code redirect URI")
    return p.parse_args()


def load_credentials(state_dir):
    """Plaintext secrets, generated once per state dir (the DB only keeps their hashes)."""
    path = state_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {k: secrets.token_urlsafe(24) for k in ("client_secret", "authcode_client_secret", "password")}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
    return creds


def provision(creds, redirect_uri):
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from oauth2_provider.models import Application
    from rest_framework.authtoken.models import Token

    from inode.models import Device, Link, Measurement

    call_command("migrate", verbosity=0, interactive=False)
    user, _ = User.objects.get_or_create(username="owner", defaults={"is_staff": True})
    user.set_password(creds["password"])
    user.save()
    api_key = Token.objects.get_or_create(user=user)[0].key
    # client_secret is saved hashed (DOT >= 2: hash_client_secret=True), hence credentials.json.
    Application.objects.update_or_create(client_id=settings.PASSWORD_CLIENT_ID, defaults=dict(
        name="iNode sync (password grant)", user=user, client_secret=creds["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL, authorization_grant_type=Application.GRANT_PASSWORD,
        redirect_uris="", hash_client_secret=True))
    Application.objects.update_or_create(client_id=settings.AUTHCODE_CLIENT_ID, defaults=dict(
        name="iNode sync (authorization code, PKCE)", user=user, client_secret=creds["authcode_client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uri, hash_client_secret=True, skip_authorization=False))
    if not Device.objects.exists():
        devs = [Device.objects.create(name=f"Sensor {i}", serial=f"SN-{1000 + i}", kind=kind)
                for i, kind in enumerate(["bluetooth", "radar", "bluetooth", "camera"], 1)]
        for i, (a, b, length) in enumerate([(0, 1, 850), (1, 2, 1200), (2, 3, 430)], 1):
            Link.objects.create(name=f"Link {i}", start=devs[a], end=devs[b], length_m=length)
    if not Measurement.objects.exists():
        devs = list(Device.objects.order_by("id"))
        for i in range(25):
            Measurement.objects.create(device=devs[i % len(devs)], value=100 + i)
    return api_key


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """One stderr line per request: method, path (no query), status. No headers, no bodies."""

    def log_request(self, code="-", size="-"):
        sys.stderr.write(f"{self.command} {urlsplit(self.path).path} {code}\n")
        sys.stderr.flush()


def main():
    t0 = time.monotonic()
    args = parse_args()
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.environ["INODE_STATE_DIR"] = str(state_dir)
    os.environ["INODE_ACCESS_TTL"] = str(args.access_ttl)
    os.environ["INODE_REFRESH_TTL"] = "" if args.refresh_ttl is None else str(args.refresh_ttl)
    os.environ["DJANGO_SETTINGS_MODULE"] = "inode_site.settings"
    sys.path.insert(0, str(HERE))

    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    django.setup()
    redirect_uri = f"http://127.0.0.1:{args.redirect_port}/callback"
    creds = load_credentials(state_dir)
    api_key = provision(creds, redirect_uri)
    app = get_wsgi_application()

    httpd = ThreadingWSGIServer(("127.0.0.1", args.port), QuietHandler)
    httpd.set_app(app)
    root = f"http://127.0.0.1:{httpd.server_address[1]}/"
    print(json.dumps({
        "base_url": root + "api/",
        "token_url": root + "api/oauth/token/",
        "client_id": settings.PASSWORD_CLIENT_ID,
        "client_secret": creds["client_secret"],
        "username": "owner",
        "password": creds["password"],
        "api_key": api_key,
        "authcode_client_id": settings.AUTHCODE_CLIENT_ID,
        "authcode_client_secret": creds["authcode_client_secret"],
        "redirect_uri": redirect_uri,
        "authorize_url": root + "api/oauth/authorize/",
        "login_url": root + "accounts/login/",
    }), flush=True)
    sys.stderr.write(f"inode test server ready on {root} in {time.monotonic() - t0:.2f}s "
                     f"(access ttl {args.access_ttl}s, state {state_dir})\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
