"""The console's aiohttp application: what it depends on, sign-in, and the guards every
request passes (thin: pages in :mod:`ops.console.pages`, actions in
:mod:`ops.console.letters` and :mod:`ops.console.holds`).

Every page but ``/sign-in``, ``/healthz`` and the stylesheet needs a session, its
operator checked against the accounts at each request; every POST carries the session's
CSRF token and every POST (the sign-in's too), when the browser says where it comes from,
comes from this origin (RELAIS_CONSOLE_ORIGIN behind a proxy). A control character in the
address or a form is a 400. Responses carry a strict Content-Security-Policy (no script at
all), refuse framing, and pages are never cached. Failures are one line naming the
setting (503: the index, the broker, the accounts file) or a 500 with an incident id
whose details are in the log only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from aiokafka.errors import KafkaError

from ops.console.accounts import Authenticator, Operator
from ops.console.bus import ConsoleBus
from ops.console.errors import AccountError, Refused
from ops.console.replays import Watches
from ops.console.sessions import (
    COOKIE,
    PasswordChecks,
    Session,
    SessionStore,
    SignInLimiter,
)
from ops.console.views import when
from ops.index.model import IndexReader
from ops.index.store import IndexStoreError

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
OPEN_PATHS = frozenset({"/sign-in", "/sign-in/callback", "/healthz", "/static/console.css"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORM_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs, lines: text
_LOCAL_PATH = re.compile(r"/(?:[^/\\\x00-\x1f\x7f][^\\\x00-\x1f\x7f]*)?")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # nothing to other sites; the real Origin to its own
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
    )
    env.filters["when"] = when
    return env


@dataclass
class Console:
    """What the pages and actions use; ``keyring_problem`` says why reveals and replays
    cannot open originals (None: the keyring is loaded)."""

    index: IndexReader
    authenticator: Authenticator
    bus: ConsoleBus
    sessions: SessionStore
    keyring_problem: str | None = None
    secure_cookies: bool = False
    origin: str = ""  # RELAIS_CONSOLE_ORIGIN: "" is the request's own scheme and host
    failure_delay_s: float = 0.5
    limiter: SignInLimiter = field(default_factory=SignInLimiter)
    checks: PasswordChecks = field(default_factory=PasswordChecks)
    watches: Watches = field(default_factory=Watches)
    state: Cached = field(default_factory=lambda: Cached(30.0))
    env: jinja2.Environment = field(default_factory=templates)


@dataclass
class Cached:
    """One value kept ``ttl_s`` seconds (the index's totals under the search page)."""

    ttl_s: float
    clock: Callable[[], float] = monotonic
    _value: Any = None
    _at: float | None = None

    async def get(self, fetch: Callable[[], Awaitable[Any]]) -> Any:
        if self._at is None or self.clock() - self._at >= self.ttl_s:
            self._value, self._at = await fetch(), self.clock()
        return self._value


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("console.session", Session)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def session_of(request: web.Request) -> Session:
    session: Session | None = request.get(SESSION)
    assert session is not None, "the auth middleware lets no request in without one"
    return session


def operator_of(request: web.Request) -> Operator:
    return session_of(request).operator


def render(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION)
    html = (
        console_of(request)
        .env.get_template(name)
        .render(session=session, path=request.path, **context)
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)


def see_other(location: str) -> web.Response:
    """A redirect after a form (303: the browser GETs the new place)."""
    return web.Response(status=303, headers={"Location": location})


def refusal(request: web.Request, message: str, *, status: int = 409) -> web.Response:
    return render(request, "message.html", status=status, title="Refused", message=message)


def require(request: web.Request, role: str) -> Operator:
    """The signed-in operator, if their account has ``role`` (else a 403 that says so)."""
    operator = operator_of(request)
    if not operator.may(role):
        raise web.HTTPForbidden(
            text=f"refused: your account ({operator.name}) lacks the role {role}; an "
            f"administrator gives it with relais console account add --role {role}"
        )
    return operator


async def index_call(request: web.Request, call: Callable[..., Any], *args: Any) -> Any:
    """Ask the index (synchronous) in a thread, so that the server goes on serving."""
    return await asyncio.to_thread(call, *args)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on everything; a session (and a CSRF token on POST) where needed;
    failures as one line that says what to fix, never a server's internals."""
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect: raised on, with the headers
            _secure(request, exc)
            raise
        message = (exc.text or exc.reason).removeprefix(f"{exc.status}: ")
        response = render(
            request, "message.html", status=exc.status, title=exc.reason, message=message
        )
    except Refused as exc:
        response = refusal(request, str(exc))
    except Exception as exc:
        response = _failure(request, exc)
    _secure(request, response)
    return response


def _failure(request: web.Request, exc: Exception) -> web.Response:
    """A 503 naming the setting for what the operator's side can fix; a 500 with an
    incident id (the details in the server's log only) for anything else."""
    if isinstance(exc, IndexStoreError):
        message = (str(exc).splitlines() or ["the index cannot be read"])[0]
        log.error("console: %s %s: %s", request.method, request.path, message)
        if "RELAIS_INDEX_URL" not in message:
            message += " (RELAIS_INDEX_URL)"
    elif isinstance(exc, KafkaError):
        log.error("console: %s %s: broker: %r", request.method, request.path, exc)
        message = f"the broker did not answer ({type(exc).__name__}): RELAIS_BOOTSTRAP_SERVERS"
    elif isinstance(exc, AccountError):
        log.error("console: %s %s: %s", request.method, request.path, exc)
        message = "the accounts file cannot be read (see the server's log): RELAIS_CONSOLE_ACCOUNTS"
    else:
        incident = secrets.token_hex(6)
        log.exception("console: incident %s: %s %s failed", incident, request.method, request.path)
        message = f"unexpected failure, incident {incident}: the details are in the server's log"
        return render(request, "message.html", status=500, title="Failed", message=message)
    return render(request, "message.html", status=503, title="Unavailable", message=message)


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    form = await _inputs(request)
    if request.path in OPEN_PATHS:
        if form is not None:
            _check_origin(request)  # a sign-in from another site: login CSRF
        return await handler(request)
    session = _session(request)
    if session is None:
        if request.method != "GET":
            return web.Response(status=401, text="sign in first: /sign-in")
        target = request.path_qs if request.path != "/" or request.query_string else ""
        suffix = f"?next={quote(target, safe='')}" if target else ""
        raise web.HTTPSeeOther(f"/sign-in{suffix}")
    request[SESSION] = session
    if form is not None:
        _check_origin(request)
        given = form.get("csrf")
        if not session.csrf_matches(given if isinstance(given, str) else None):
            raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or stale")
    return await handler(request)


async def _inputs(request: web.Request) -> Mapping[str, Any] | None:
    """The POST form (None for a GET); a control character anywhere is a 400."""
    texts = [request.path, *request.query.keys(), *request.query.values()]
    form = await request.post() if request.method == "POST" else None
    if any(_CONTROL.search(t) for t in texts) or any(
        isinstance(v, str) and _FORM_CONTROL.search(k + v) for k, v in (form or {}).items()
    ):
        raise web.HTTPBadRequest(
            text="refused: a control character in the address or the form (remove it)"
        )
    return form


def _session(request: web.Request) -> Session | None:
    """The request's session, its operator as their account is now (None: none, or the
    account is gone or made again since: the session ends)."""
    console = console_of(request)
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    renewed = console.sessions.renew(session, console.authenticator.current(session.operator))
    if renewed is None:
        log.info(
            "console: a session of %s ended: its account was removed or made again",
            session.operator.name,
        )
    return renewed


def _check_origin(request: web.Request) -> None:
    """A form must come from the console's own origin (RELAIS_CONSOLE_ORIGIN behind a proxy,
    else the request's scheme and host), when the browser says where it comes from."""
    fetched = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if origin == "null" and fetched == "same-origin":
        origin = None  # a browser's own form under a stricter Referrer-Policy (a proxy's)
    expected = console_of(request).origin or f"{request.scheme}://{request.host}"
    if (fetched and fetched not in {"same-origin", "none"}) or (
        origin is not None and origin.rstrip("/").lower() != expected.lower()
    ):
        raise web.HTTPForbidden(
            text="refused: the form comes from another site (behind a proxy, set "
            "RELAIS_CONSOLE_ORIGIN to the console's public origin)"
        )


def local_path(target: str) -> str:
    """Where to go after signing in: a path of this site only (else ``/``)."""
    return target if _LOCAL_PATH.fullmatch(target) else "/"


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(HERE / "static" / "console.css")


def make_app(console: Console) -> web.Application:
    """The console's application, every route registered."""
    from ops.console import (  # noqa: PLC0415 - they import this
        holds,
        identity_reveal,
        letters,
        pages,
        signin,
    )

    app = web.Application(middlewares=[guard], client_max_size=256 << 10)
    app[CONSOLE] = console
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/static/console.css", stylesheet)
    signin.add_routes(app.router)
    pages.add_routes(app.router)
    letters.add_routes(app.router)
    holds.add_routes(app.router)
    identity_reveal.add_routes(app.router)
    return app
