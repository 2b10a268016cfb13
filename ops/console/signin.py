"""Signing in and out of the console (thin: who may is :mod:`ops.console.accounts`, how
often :mod:`ops.console.sessions`).

A sign-in's name must look like an account's before anything else is done; the attempt
is then counted (per name, per client address, in all: the shared two refuse only a name
that failed lately) before its password is checked,
on the password checks' own small pool. Failed sign-ins and refusals are logged with the
name and the client's address, never the password. A provider that signs in elsewhere
(OpenID Connect) sends the browser away from ``GET /sign-in`` and takes it back at
``GET /sign-in/callback`` (:class:`ops.console.accounts.Authenticator`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from aiohttp import web

from ops.console.accounts import Operator, valid_name
from ops.console.app import console_of, local_path, render, see_other
from ops.console.sessions import COOKIE

log = logging.getLogger(__name__)
STATE_COOKIE = "relais_console_state"
WRONG = "wrong name or password"


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    target = local_path(request.query.get("next", "/"))
    console = console_of(request)
    redirect = console.authenticator.start(target)
    if redirect is not None:  # a provider that signs in elsewhere
        response = see_other(redirect.url)
        response.set_cookie(
            STATE_COOKIE,
            redirect.state,
            httponly=True,
            samesite="Lax",  # it comes back from the provider's site
            secure=console.secure_cookies,
            path="/sign-in",
            max_age=600,
        )
        return response
    return render(request, "sign_in.html", title="Sign in", next=target, error=None)


def _form_page(request: web.Request, target: str, error: str, status: int) -> web.Response:
    return render(request, "sign_in.html", status=status, title="Sign in", next=target, error=error)


async def sign_in(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    name, target = form.get("name", "").strip(), local_path(form.get("next", "/"))
    client = request.remote or "-"
    if not valid_name(name):  # no account has it: nothing counted, nothing hashed
        log.warning("console: sign-in with a malformed name from %s", client)
        await asyncio.sleep(console.failure_delay_s)
        return _form_page(request, target, WRONG, 401)
    if console.checks.busy():
        log.warning("console: sign-in of %s from %s refused: too many at once", name, client)
        return _form_page(request, target, "too many sign-ins at once: try again", 503)
    refusal = console.limiter.attempt(name, client)
    if refusal is not None:
        log.warning(
            "console: sign-in of %s from %s refused for %.0f s (the %s limit)",
            name,
            client,
            refusal.wait_s,
            refusal.limit,
        )
        return _form_page(request, target, refusal.message(name), 429)
    check = partial(console.authenticator.sign_in, {**form, "name": name})
    operator = await console.checks.run(check)
    if operator is None:
        log.warning("console: sign-in of %s from %s failed", name, client)
        await asyncio.sleep(console.failure_delay_s)
        return _form_page(request, target, WRONG, 401)
    console.limiter.succeeded(name, client)
    return _begin(request, operator, target)


async def callback(request: web.Request) -> web.StreamResponse:
    """Where a provider that signs in elsewhere sends the browser back."""
    console = console_of(request)
    check = partial(
        console.authenticator.callback, dict(request.query), request.cookies.get(STATE_COOKIE)
    )
    operator = await console.checks.run(check)
    if operator is None:
        log.warning("console: sign-in callback refused from %s", request.remote or "-")
        raise web.HTTPUnauthorized(text="sign-in refused by the provider: /sign-in again")
    response = _begin(request, operator, "/")
    response.del_cookie(STATE_COOKIE, path="/sign-in")
    return response


def _begin(request: web.Request, operator: Operator, target: str) -> web.Response:
    console = console_of(request)
    console.sessions.end(request.cookies.get(COOKIE))  # a sign-in never keeps an old token
    session = console.sessions.begin(operator)
    log.info("console: %s signed in from %s", operator.name, request.remote or "-")
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


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sign-in", sign_in_page)
    router.add_post("/sign-in", sign_in)
    router.add_get("/sign-in/callback", callback)
    router.add_post("/sign-out", sign_out)
