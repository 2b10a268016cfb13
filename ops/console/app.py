"""The console's aiohttp application: what it depends on, sign-in, and the guards every
request passes (thin: pages in :mod:`ops.console.pages`, actions in
:mod:`ops.console.letters` and :mod:`ops.console.holds`).

Every page but ``/sign-in``, ``/healthz`` and the stylesheet needs a session; every POST
carries the session's CSRF token (and, when the browser says where it comes from, comes
from this origin). Responses carry a strict Content-Security-Policy (no script at all),
refuse framing, and pages are never cached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from ops.console.accounts import Authenticator, Operator
from ops.console.bus import ConsoleBus
from ops.console.errors import Refused
from ops.console.replays import Watches
from ops.console.sessions import COOKIE, Session, SessionStore, SignInLimiter
from ops.console.views import when
from ops.index.model import IndexReader

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
OPEN_PATHS = frozenset({"/sign-in", "/healthz", "/static/console.css"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
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
    failure_delay_s: float = 0.5
    limiter: SignInLimiter = field(default_factory=SignInLimiter)
    watches: Watches = field(default_factory=Watches)
    env: jinja2.Environment = field(default_factory=templates)


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
    """Security headers on everything; a session (and a CSRF token on POST) where needed."""
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
        log.exception("console: %s %s failed", request.method, request.path)
        response = render(
            request,
            "message.html",
            status=500,
            title="Failed",
            message=f"{type(exc).__name__}: {exc}",
        )
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS:
        return await handler(request)
    session = console_of(request).sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if request.method != "GET":
            return web.Response(status=401, text="sign in first: /sign-in")
        target = request.path_qs if request.path != "/" or request.query_string else ""
        suffix = f"?next={quote(target, safe='')}" if target else ""
        raise web.HTTPSeeOther(f"/sign-in{suffix}")
    request[SESSION] = session
    if request.method == "POST":
        _check_post(request, session, await request.post())
    return await handler(request)


def _check_post(request: web.Request, session: Session, form: Any) -> None:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text="refused: the form comes from another site")
    given = form.get("csrf")
    if not session.csrf_matches(given if isinstance(given, str) else None):
        raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or stale")


def _next(target: str) -> str:
    """Where to go after signing in: a path of this site only."""
    parts = urlsplit(target)
    if target.startswith("/") and target[1:2] not in {"/", "\\"} and not parts.netloc:
        return target
    return "/"


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    return render(
        request,
        "sign_in.html",
        title="Sign in",
        next=_next(request.query.get("next", "/")),
        error=None,
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    name, target = form.get("name", "").strip(), _next(form.get("next", "/"))
    wait_s = console.limiter.refused_for_s(name)
    if wait_s is not None:
        error = f"too many failed sign-ins for {name}: try again in {wait_s:.0f} s"
        return render(
            request, "sign_in.html", status=429, title="Sign in", next=target, error=error
        )
    operator = await asyncio.to_thread(console.authenticator.sign_in, {**form, "name": name})
    if operator is None:
        console.limiter.failed(name)
        await asyncio.sleep(console.failure_delay_s)
        error = "wrong name or password"
        return render(
            request, "sign_in.html", status=401, title="Sign in", next=target, error=error
        )
    console.limiter.succeeded(name)
    console.sessions.end(request.cookies.get(COOKIE))  # a sign-in never keeps an old token
    session = console.sessions.begin(operator)
    log.info("console: %s signed in", operator.name)
    response = see_other(target)
    response.set_cookie(
        COOKIE,
        session.token,
        httponly=True,
        samesite="Strict",
        secure=console.secure_cookies,
        path="/",
        max_age=int(console.sessions.session_s),
    )
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    console_of(request).sessions.end(request.cookies.get(COOKIE))
    response = see_other("/sign-in")
    response.del_cookie(COOKIE, path="/")
    return response


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(HERE / "static" / "console.css")


def make_app(console: Console) -> web.Application:
    """The console's application, every route registered."""
    from ops.console import holds, letters, pages  # noqa: PLC0415 - they import this module

    app = web.Application(middlewares=[guard], client_max_size=256 << 10)
    app[CONSOLE] = console
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/static/console.css", stylesheet)
    app.router.add_get("/sign-in", sign_in_page)
    app.router.add_post("/sign-in", sign_in)
    app.router.add_post("/sign-out", sign_out)
    pages.add_routes(app.router)
    letters.add_routes(app.router)
    holds.add_routes(app.router)
    return app
