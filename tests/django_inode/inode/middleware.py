"""Counts token-endpoint requests by grant_type, issued access tokens and invalid_grant errors."""
import hashlib
import json
import threading

from django.http import QueryDict

TOKEN_PATH = "/api/oauth/token/"
_lock = threading.Lock()
_counts = {
    "access_tokens_issued": 0,
    "token_requests": {"password": 0, "refresh_token": 0, "authorization_code": 0},
    "invalid_grant": 0,
}
_issued = set()  # sha256 of each access token handed out: DOT answers racing refreshes of one
#                  refresh token with the same pair, which counts once


def snapshot():
    with _lock:
        return json.loads(json.dumps(_counts))


class TokenCounterMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != TOKEN_PATH:
            return self.get_response(request)
        # Read the raw body (cached by Django, so the token view can still read it).
        grant = QueryDict(request.body).get("grant_type") or request.GET.get("grant_type") or "(none)"
        response = self.get_response(request)
        try:
            body = json.loads(response.content)
        except ValueError:
            body = {}
        with _lock:
            reqs = _counts["token_requests"]
            reqs[grant] = reqs.get(grant, 0) + 1
            if response.status_code == 200 and "access_token" in body:
                _issued.add(hashlib.sha256(body["access_token"].encode()).hexdigest())
                _counts["access_tokens_issued"] = len(_issued)
            if body.get("error") == "invalid_grant":
                _counts["invalid_grant"] += 1
        return response
