"""Dead letters in the console: the list, one letter, its replay and reveal (thin).

A replay applies ``relais dlq replay``'s safeguards through the same code
(:func:`ops.dlq.replay.plan`, :meth:`ops.dlq.shell.DlqBus.send_back`): a letter that
came from no topic (a door refusal) cannot go back, a letter replayed before goes back
only when "again" is ticked, the sealed original needs the keyring. Both read the letter
where the index says it lies and refuse when it is not that letter (a stale index). A
reveal writes its audit event before it shows anything, and shows nothing when that write
fails.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ops.console.app import (
    console_of,
    index_call,
    render,
    require,
    see_other,
)
from ops.console.bus import console_audit
from ops.console.errors import Refused
from ops.console.views import checked_text, letter_search_of, replays_in, when
from ops.dlq.letters import LetterView, show_lines
from ops.dlq.replay import plan
from ops.index.model import LetterRow


async def letters_page(request: web.Request) -> web.StreamResponse:
    params = dict(request.query)
    query, errors = letter_search_of(params, datetime.now(UTC))
    index = console_of(request).index
    rows = [] if errors else await index_call(request, index.letters, query)
    return render(
        request, "letters.html", title="Dead letters", rows=rows, errors=errors, form=params
    )


async def _row(request: web.Request) -> LetterRow:
    wanted = request.match_info["letter"]
    row = await index_call(request, console_of(request).index.letter, wanted)
    if row is None:
        raise web.HTTPNotFound(text=f"no dead letter {wanted} in the index")
    assert isinstance(row, LetterRow)
    return row


async def _replays(request: web.Request, row: LetterRow) -> list[Any]:
    view = row.view
    journey = await index_call(
        request, console_of(request).index.journey, view.event_id or view.dead_letter_id
    )
    return replays_in(journey, view.dead_letter_id)


async def letter_page(request: web.Request) -> web.StreamResponse:
    row = await _row(request)
    console = console_of(request)
    return render(
        request,
        "letter.html",
        title=f"Dead letter {row.view.dead_letter_id[:8]}",
        row=row,
        view=row.view,
        fields=shown(row.view),
        replays=await _replays(request, row),
        can_go_back=row.view.source_topic in console.bus.dlq.topics(),
        keyring_problem=console.keyring_problem,
    )


def _need_keyring(request: web.Request, what: str) -> None:
    problem = console_of(request).keyring_problem
    if problem is not None:
        raise Refused(f"{what} needs the keyring to open the sealed original: {problem}")


async def replay(request: web.Request) -> web.StreamResponse:
    operator = require(request, "operator")
    row = await _row(request)
    _need_keyring(request, "a replay")
    console = console_of(request)
    again = (await request.post()).get("again") == "on"
    dlq = console.bus.dlq
    async with console.watches.lock:
        view = await console.bus.letter(row)  # checked first: a stale index sends nothing
        replays = await dlq.replays()
        [planned] = plan([view], replays, topics=dlq.topics(), again=again)
        if planned.skip is not None:
            raise Refused("not replayed: " + planned.skip.replace("--again", "ticking 'again'"))
        starts = await dlq.outcome_offsets()
        sent = await dlq.send_back(
            [planned], replays, by=operator.name, sent_one=lambda _p, _s: None
        )
    watch = console.watches.add(view.dead_letter_id, operator.name, sent[0], starts)
    return see_other(f"/dead-letters/{view.dead_letter_id}/replays/{watch.watch_id}")


async def replay_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    watch = console.watches.get(request.match_info["watch"])
    if watch is None or watch.dead_letter_id != request.match_info["letter"]:
        raise web.HTTPNotFound(text="no such replay in this console (restarted since?)")
    if console.watches.state(watch) == "waiting":
        found = await console.bus.dlq.follow([watch.sent], watch.starts, timeout_s=1.0)
        watch.outcomes = found.get(watch.dead_letter_id, [])
    return render(
        request,
        "replay.html",
        title=f"Replay of {watch.dead_letter_id[:8]}",
        watch=watch,
        state=console.watches.state(watch),
        wait_s=console.watches.wait_s,
    )


async def reveal(request: web.Request) -> web.StreamResponse:
    operator = require(request, "operator")
    row = await _row(request)
    try:
        reason = checked_text((await request.post()).get("reason"), "reason", required=True)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    _need_keyring(request, "a reveal")
    console = console_of(request)
    # the letter the index names, checked (a stale index is refused, nothing audited);
    # its original is shown only once the audit event is written
    view = await console.bus.letter(row)
    audit = console_audit(
        operator=operator.name,
        event_id=view.event_id or view.dead_letter_id,
        outcome="revealed:dead-letter",
        detail=f"dead-letter {view.dead_letter_id} revealed\nby {operator.name}\nreason: {reason}",
        now=datetime.now(UTC),
        document_unique_id=view.document_unique_id,
    )
    await audited(console.bus.audit(audit), "reveal")
    earlier = [f"{when(s.at)}: {s.outcome}" for s in await _replays(request, row)]
    lines = show_lines(view, earlier, reveal=True, opener=_opener(request))
    return render(
        request, "revealed.html", title="Revealed dead letter", view=view, lines=lines, audit=audit
    )


async def audited(writing: Awaitable[None], what: str) -> None:
    """Await the audit event's write; any failure refuses the reveal (nothing shown)."""
    try:
        await writing
    except Exception as exc:  # any failure to audit refuses the reveal
        raise Refused(
            f"{what} refused: the audit event could not be written ({type(exc).__name__}); "
            "nothing was shown"
        ) from None


def _opener(request: web.Request) -> Any:
    from relais.envelope import Envelope, open_envelope  # noqa: PLC0415

    keyring = console_of(request).bus.keyring

    def opener(envelope: Any, event_id: str, purpose: str) -> bytes:
        assert keyring is not None
        return open_envelope(
            keyring, Envelope.from_record(envelope), event_id=event_id, purpose=purpose
        )

    return opener


def shown(view: LetterView) -> list[tuple[str, str]]:
    """The fields of a dead letter the page lists (no patient data, no content)."""
    place = view.source_topic
    if view.source_partition is not None:
        place += f" partition {view.source_partition} offset {view.source_offset}"
    return [
        ("stage", view.stage),
        ("reason", f"{view.reason_code}: {view.reason}"),
        ("came from", place),
        ("sender", view.facility or "-"),
        ("sector", view.sector or "-"),
        ("original", f"{view.original_size} bytes, sha256 {view.original_sha256}"),
    ]


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/dead-letters", letters_page)
    router.add_get("/dead-letters/{letter}", letter_page)
    router.add_post("/dead-letters/{letter}/replay", replay)
    router.add_get("/dead-letters/{letter}/replays/{watch}", replay_page)
    router.add_post("/dead-letters/{letter}/reveal", reveal)
