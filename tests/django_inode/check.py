#!/usr/bin/env python3
"""Self-check of the iNode-like test server: starts server.py, drives it as the iNode doc does."""
import base64
import hashlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

HERE = Path(__file__).resolve().parent
TTL = 2
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


class Inputs(HTMLParser):
    """Collects <input name=.. value=..> of a page."""

    def __init__(self, html):
        super().__init__()
        self.fields = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") != "submit":
            self.fields[a["name"]] = a.get("value") or ""


def start_server(state_dir, log):
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "--state-dir", state_dir, "--port", "0",
         "--access-ttl", str(TTL)],
        stdout=subprocess.PIPE, stderr=log, text=True)
    t0 = time.monotonic()
    line = proc.stdout.readline()  # the server prints exactly one JSON line once listening
    if not line:
        log.seek(0)
        raise SystemExit(f"server.py exited with {proc.wait()} before its JSON line:\n{log.read()}\n"
                         "0 passed, 1 failed")
    print(f"# server ready in {time.monotonic() - t0:.2f}s")
    return proc, json.loads(line)


def run(cfg):
    base, token_url = cfg["base_url"], cfg["token_url"]
    links, devices = base + "v1/links/", base + "v1/devices/"

    # Password grant exactly as the iNode doc: client credentials in the form body.
    r = requests.post(token_url, data={
        "grant_type": "password", "username": cfg["username"], "password": cfg["password"],
        "client_id": cfg["client_id"], "client_secret": cfg["client_secret"], "scope": "sync"})
    check("password grant 200", r.status_code == 200, r.text)
    tok = r.json()
    check("token response fields", tok.get("token_type") == "Bearer" and tok.get("expires_in") == TTL
          and tok.get("scope") == "sync" and tok.get("refresh_token"), tok)
    hdr = {"Authorization": "Bearer %s" % tok["access_token"]}

    r = requests.get(links + "?no_pagination", headers=hdr)
    check("links ?no_pagination is a plain array", r.status_code == 200 and isinstance(r.json(), list)
          and len(r.json()) == 3, r.text)
    r = requests.get(devices + "?no_pagination", headers=hdr)
    check("devices ?no_pagination is a plain array", r.status_code == 200 and len(r.json()) == 4, r.text)
    r = requests.get(devices, headers=hdr)
    page = r.json()
    check("devices paginated page", r.status_code == 200 and page["count"] == 4 and len(page["results"]) == 2
          and page["next"] and page["previous"] is None, r.text)
    pages, url = [], base + "v1/measurements/"
    while url and len(pages) < 5:
        r = requests.get(url, headers=hdr)
        pages.append(r.json())
        url = pages[-1].get("next")
    check("measurements: 25 rows over 3 pages of 10", [len(p["results"]) for p in pages] == [10, 10, 5]
          and pages[0]["count"] == 25, pages)
    r = requests.get(links + "?no_pagination")
    check("no credentials -> 401 Bearer", r.status_code == 401
          and r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (r.status_code, r.headers))

    time.sleep(TTL + 0.5)
    r = requests.get(links + "?no_pagination", headers=hdr)
    check("expired access token -> 401", r.status_code == 401, r.status_code)

    old_rt = tok["refresh_token"]
    r = requests.post(token_url, data={"grant_type": "refresh_token", "client_id": cfg["client_id"],
                                       "client_secret": cfg["client_secret"], "refresh_token": old_rt})
    check("refresh 200", r.status_code == 200, r.text)
    tok2 = r.json()
    check("refresh token rotated", tok2.get("refresh_token") and tok2["refresh_token"] != old_rt)
    r = requests.get(links + "?no_pagination", headers={"Authorization": "Bearer " + tok2["access_token"]})
    check("new access token works", r.status_code == 200, r.status_code)
    r = requests.post(token_url, data={"grant_type": "refresh_token", "client_id": cfg["client_id"],
                                       "client_secret": cfg["client_secret"], "refresh_token": old_rt})
    check("old refresh token -> 400 invalid_grant", r.status_code == 400
          and r.json().get("error") == "invalid_grant", (r.status_code, r.text))
    r = requests.post(token_url, data={"grant_type": "refresh_token", "refresh_token": tok2["refresh_token"]},
                      auth=(cfg["client_id"], "wrong"))
    check("wrong client secret -> 401 invalid_client", r.status_code == 401
          and r.json().get("error") == "invalid_client", (r.status_code, r.text))

    r = requests.get(links + "?no_pagination", headers={"Authorization": "Token %s" % cfg["api_key"]})
    check("API key (Token) auth", r.status_code == 200 and len(r.json()) == 3, r.text)
    r = requests.get(links + "?no_pagination", headers={"Authorization": "Token nope"})
    check("bad API key -> 401", r.status_code == 401, r.status_code)

    st = requests.get(base.replace("/api/", "/_test/state")).json()
    check("state after password+refresh", st["valid_refresh_tokens"] == [tok2["refresh_token"]]
          and st["revoked_refresh_tokens"] == 1 and st["access_tokens_issued"] == 2
          and st["token_requests"] == {"password": 1, "refresh_token": 3, "authorization_code": 0}
          and st["invalid_grant"] == 1, st)

    # Authorization code + PKCE (S256), headless.
    s = requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": cfg["authcode_client_id"], "redirect_uri": cfg["redirect_uri"],
              "scope": "sync", "state": state}
    r = s.get(cfg["authorize_url"], params=params, allow_redirects=False)
    check("authorize needs login", r.status_code == 302 and "/accounts/login/" in r.headers["Location"])
    r = s.get(cfg["login_url"])
    form = Inputs(r.text).fields
    check("login page has csrf token", r.status_code == 200 and form.get("csrfmiddlewaretoken"), r.status_code)
    r = s.post(cfg["login_url"], data={**form, "username": cfg["username"], "password": cfg["password"]},
               allow_redirects=False)
    check("login form POST -> 302", r.status_code == 302, (r.status_code, r.text[:300]))

    r = s.get(cfg["authorize_url"], params=params, allow_redirects=False)
    loc = r.headers.get("Location", "")
    check("PKCE required for the auth-code app", r.status_code in (302, 400)
          and ("error=invalid_request" in loc or "error" in r.text), (r.status_code, loc))

    params.update(code_challenge=challenge, code_challenge_method="S256")
    r = s.get(cfg["authorize_url"], params=params, allow_redirects=False)
    form = Inputs(r.text).fields
    check("approval form", r.status_code == 200 and form.get("code_challenge") == challenge, r.text[:300])
    r = s.post(cfg["authorize_url"], data={**form, "allow": "Authorize"}, allow_redirects=False)
    loc = r.headers.get("Location", "")
    q = parse_qs(urlsplit(loc).query)
    check("approve -> 302 to redirect_uri with code+state", r.status_code == 302
          and loc.startswith(cfg["redirect_uri"] + "?") and q.get("state") == [state] and q.get("code"), loc)
    code = q["code"][0]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": cfg["redirect_uri"],
                "code_verifier": verifier}
    auth = (cfg["authcode_client_id"], cfg["authcode_client_secret"])
    r = requests.post(token_url, data=exchange, auth=auth)
    check("code exchange 200 (basic client auth)", r.status_code == 200 and r.json().get("refresh_token"), r.text)
    tok3 = r.json()
    r = requests.get(devices + "?no_pagination", headers={"Authorization": "Bearer " + tok3["access_token"]})
    check("auth-code access token works", r.status_code == 200, r.status_code)
    r = requests.post(token_url, data=exchange, auth=auth)
    check("code reuse -> 400 invalid_grant", r.status_code == 400 and r.json().get("error") == "invalid_grant",
          r.text)

    st = requests.get(base.replace("/api/", "/_test/state")).json()
    check("final state", sorted(st["valid_refresh_tokens"]) == sorted([tok2["refresh_token"], tok3["refresh_token"]])
          and st["token_requests"]["authorization_code"] == 2 and st["invalid_grant"] == 2
          and st["access_tokens_issued"] == 3, st)


def main():
    with tempfile.TemporaryDirectory(prefix="inode-check-") as state_dir, \
            tempfile.TemporaryFile("w+") as log:
        proc, cfg = start_server(state_dir, log)
        try:
            run(cfg)
        except Exception as e:  # a crash counts as a failure, the summary still prints
            check("no exception", False, repr(e))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        if failed:  # the server's request log, to see what it answered
            log.seek(0)
            print("# server stderr:\n" + log.read())
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
