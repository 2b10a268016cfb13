"""The reading pages: search, a document's journey, senders, destinations (thin: the
index answers, :mod:`ops.console.views` shapes, the templates lay out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ops.console.app import console_of, index_call, render
from ops.console.views import (
    BRANCHES,
    next_page,
    release_explanation,
    search_of,
    short_key,
    timeline,
    window_of,
)
from ops.index.model import DESTINATIONS, STATUSES


async def search_page(request: web.Request) -> web.StreamResponse:
    index = console_of(request).index
    params = dict(request.query)
    query, errors = search_of(params, datetime.now(UTC))
    rows = [] if errors else await index_call(request, index.search, query)
    state = await console_of(request).state.get(lambda: index_call(request, index.state))
    return render(
        request,
        "search.html",
        title="Documents",
        form={k: params.get(k, "") for k in params},
        statuses=STATUSES,
        destinations=DESTINATIONS,
        rows=rows,
        errors=errors,
        next_query=next_page(params, rows, query.limit),
        short_key=short_key,
        state=state,
    )


async def journey_page(request: web.Request) -> web.StreamResponse:
    index = console_of(request).index
    document = request.match_info["document"]
    row = await index_call(request, index.document, document)
    journey = await index_call(request, index.journey, document)
    if row is None and not journey.steps:
        return render(
            request,
            "message.html",
            status=404,
            title="Unknown document",
            message=f"the index knows nothing of {document} (an event id or a document "
            "unique id; the index may not have read it yet)",
        )
    return render(
        request,
        "journey.html",
        title=f"Journey of {document}",
        document=document,
        row=row,
        journey=journey,
        steps=timeline(journey),
        branches=BRANCHES,
        explanation=release_explanation(journey),
        ends=sorted(journey.destinations().items()),
        short_key=short_key,
    )


async def senders_page(request: web.Request) -> web.StreamResponse:
    return await _stats_page(request, "senders.html", "Senders", console_of(request).index.senders)


async def destinations_page(request: web.Request) -> web.StreamResponse:
    index = console_of(request).index
    return await _stats_page(request, "destinations.html", "Destinations", index.destinations)


async def _stats_page(
    request: web.Request, template: str, title: str, figures: Callable[[datetime], Sequence[Any]]
) -> web.StreamResponse:
    """A table of figures since the window the query asks for (last 24 h by default)."""
    since, errors = window_of(request.query, datetime.now(UTC))
    rows = [] if errors else await index_call(request, figures, since)
    return render(
        request,
        template,
        title=title,
        rows=rows,
        since=since,
        since_text=request.query.get("since", "24h"),
        errors=errors,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", search_page)
    router.add_get("/documents/{document}", journey_page)
    router.add_get("/senders", senders_page)
    router.add_get("/destinations", destinations_page)
