"""Who may talk to the server: the Jupyter model of a local server that runs code.

Every request, page or API, passes three checks before any route sees it:

1. `Host` names the server (its address, `localhost`, `127.0.0.1` or `[::1]`, with its
   port): a page of another site whose name was rebound to 127.0.0.1 is refused.
2. The token, from `Authorization: Bearer`, the cookie, or `?token=` (which sets the
   cookie and redirects to the same address without the token): missing is 401, wrong 403.
3. A request that changes something (any method but GET and HEAD) made by a browser must
   come from one of the server's own pages (`Origin`, else `Referer`); a request that
   carries the token in its `Authorization` header is a script's, which no other site can
   forge, and needs no `Origin`.

Responses also tell the browser to run no script but ours and to show no page of ours in
a frame of another site.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        b"form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def cookie_name(port: int) -> str:
    """One cookie per port: servers on two ports of the same host keep their own token."""
    return f"orchestrate_ui_{port}"


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The `Host` values that name the server; None (any) when it listens on every address,
    where the token alone guards it."""
    if host in WILDCARD_HOSTS:
        return None
    shown = f"[{host}]" if ":" in host else host
    return frozenset(f"{name}:{port}" for name in {shown, *LOOPBACK_NAMES})


class Guard:
    """ASGI middleware: the host, token and origin checks above, then the app."""

    def __init__(self, app: ASGIApp, *, token: str, host: str, port: int) -> None:
        self.app = app
        self.token = token
        self.hosts = allowed_hosts(host, port)
        self.cookie = cookie_name(port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, _with_security_headers(send))

    def refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts is not None and host.lower() not in self.hosts:
            return _refused(400, "this server answers only to its own address (Host header)")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        bearer = _bearer(headers.get("authorization", ""))
        cookie = _cookie(headers.get("cookie", ""), self.cookie)
        given = bearer or query.get("token") or cookie
        if given is None:
            return _refused(
                401,
                "a token is needed: open the address that `orchestrate ui` "
                "printed (it ends in ?token=...)",
            )
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return _refused(403, "wrong token: open the address that `orchestrate ui` printed")
        method = scope["method"]
        if method not in SAFE_METHODS and not _same_origin(headers, host, bearer is not None):
            return _refused(
                403, "refused: this request did not come from one of this server's pages (Origin)"
            )
        if "token" in query and bearer is None and method in SAFE_METHODS:
            return self._set_cookie(scope, query)
        return None

    def _set_cookie(self, scope: Scope, query: dict[str, str]) -> Response:
        """Keep the token in a cookie and take it out of the address bar."""
        rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
        target = scope["path"] + (f"?{rest}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
        return response


def _refused(status: int, message: str) -> Response:
    return PlainTextResponse(
        message + "\n", status_code=status, headers={"cache-control": "no-store"}
    )


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def _cookie(value: str, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(value)
    except Exception:  # a malformed cookie header is no token
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same_origin(headers: Headers, host: str, scripted: bool) -> bool:
    own = f"http://{host}"
    origin = headers.get("origin")
    if origin is not None:
        return origin == own
    referer = headers.get("referer")
    if referer is not None:
        return referer == own or referer.startswith(own + "/")
    return scripted


def _with_security_headers(send: Send) -> Any:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return sending
