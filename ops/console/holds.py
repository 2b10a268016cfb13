"""Held and blocked patients in the console, and the identitovigilance decisions (thin).

The same reading and the same commands as ``relais identity`` (:mod:`ops.identity`):
patients by their pseudonymised key, release / reject / unblock sent to the identity
stage on ``identity.commands`` with the operator's name and comment, then audited (as
sent). Revealing a patient's traits writes an audit event in each held document's
journey first, and shows nothing when one cannot be written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ops.console.app import console_of, operator_of, render, require, see_other
from ops.console.bus import console_audit
from ops.console.errors import Refused
from ops.console.letters import audited
from ops.console.views import checked_text
from ops.identity.bus import command_record
from ops.identity.views import TRAITS, PatientView, patient_views, select, unknown_documents

ACTIONS = {"release": "RELEASE", "reject": "REJECT", "unblock": "UNBLOCK"}
ROLE = "identitovigilance"


async def _views(request: web.Request) -> list[PatientView]:
    identity = console_of(request).bus.identity
    if not await identity.changelogs():  # no identity stage ran yet: nobody is held
        return []
    return patient_views(await identity.states(), await identity.alerts())


def _page(
    request: web.Request,
    views: list[PatientView],
    traits: Mapping[str, Mapping[str, Any]] | None = None,
) -> web.Response:
    operator = operator_of(request)
    return render(
        request,
        "holds.html",
        title="Held and blocked patients",
        views=views,
        traits=traits or {},
        trait_names=TRAITS,
        may_decide=operator.may(ROLE),
        notice=_notice(request.query),
        keyring_problem=console_of(request).keyring_problem,
    )


def _notice(query: Mapping[str, str]) -> str | None:
    action, patient, command = (query.get(k) for k in ("sent", "patient", "command"))
    if action not in ACTIONS.values() or not patient or not command:
        return None
    return (
        f"{action} sent for patient {patient[:16]} (command {command[:36]}): the identity "
        "stage applies it in order with the patient's documents; reload to see its effect"
    )


async def holds_page(request: web.Request) -> web.StreamResponse:
    return _page(request, await _views(request))


async def _target(request: web.Request) -> PatientView:
    try:
        return select(await _views(request), request.match_info["patient"])
    except LookupError as exc:
        raise Refused(str(exc)) from None


async def reveal(request: web.Request) -> web.StreamResponse:
    """One patient's traits, from each held document's sealed identity (audited first)."""
    operator = require(request, ROLE)
    try:
        reason = checked_text((await request.post()).get("reason"), "reason", required=True)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    console = console_of(request)
    if console.keyring_problem is not None or console.bus.keyring is None:
        raise Refused(f"revealing traits needs the keyring: {console.keyring_problem}")
    view = await _target(request)
    now = datetime.now(UTC)
    for held in view.state.held:  # in each document's journey, before anything is shown
        audit = console_audit(
            operator=operator.name,
            event_id=held.event_id,
            outcome="revealed:identity-traits",
            detail=f"identity traits of patient {view.key[:16]} revealed\n"
            f"by {operator.name}\nreason: {reason}",
            now=now,
        )
        await audited(console.bus.audit(audit), "reveal")
    traits = {held.event_id: _traits(console.bus.keyring, held.value) for held in view.state.held}
    return _page(request, [view], traits)


def _traits(keyring: Any, value: bytes) -> dict[str, Any]:
    from relais.contracts import Codec  # noqa: PLC0415
    from relais.patient_traits import open_traits  # noqa: PLC0415

    _, record = Codec().decode(value, expected="DocumentSubmitted")
    return open_traits(record, keyring)


def _events(view: PatientView, action: str, form: Any) -> tuple[str, ...]:
    """The documents the command names (none for an unblock), checked against the state."""
    if action == "UNBLOCK":
        if not view.state.blocked:
            raise Refused(f"patient {view.key[:16]} is not blocked")
        return ()
    event_ids = tuple(e for e in form.getall("event", []) if isinstance(e, str))
    if not view.state.held:
        raise Refused(f"patient {view.key[:16]} holds no document")
    if not event_ids:
        raise Refused(f"tick the held documents to {action.lower()} (none was ticked)")
    if unknown := unknown_documents(view, event_ids):
        raise Refused(f"not held for this patient (any more?): {', '.join(unknown)}")
    return event_ids


async def decide(request: web.Request) -> web.StreamResponse:
    """Release, reject or unblock: the command the CLI sends, then its audit event."""
    operator = require(request, ROLE)
    action = ACTIONS.get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound(text="actions: release, reject, unblock")
    form = await request.post()
    try:
        comment = checked_text(form.get("comment"), "comment", required=False)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    view = await _target(request)
    event_ids = _events(view, action, form)
    command = command_record(view.key, action, operator.name, event_ids=event_ids, comment=comment)
    console = console_of(request)
    await console.bus.identity.send("IdentityCommand", command, key=view.key)
    try:  # audited once sent: the audit says what happened, not what was meant
        await console.bus.audit(_decision_audit(operator.name, view, action, command, comment))
    except Exception as exc:
        raise Refused(
            f"{action} was sent (command {command['event_id']}), but the console's audit "
            f"event could not be written ({type(exc).__name__}); the identity stage audits "
            "each document it applies it to"
        ) from None
    query = urlencode({"sent": action, "patient": view.key[:16], "command": command["event_id"]})
    return see_other(f"/holds?{query}")


def _decision_audit(
    operator: str, view: PatientView, action: str, command: Any, comment: str | None
) -> Any:
    documents = ", ".join(command["event_ids"]) or "-"
    return console_audit(
        operator=operator,
        event_id=command["event_id"],
        outcome=f"identity-command:{action.lower()}",
        detail=f"{action} of patient {view.key[:16]} sent to the identity stage\n"
        f"by {operator}\ndocuments: {documents}" + (f"\ncomment: {comment}" if comment else ""),
        now=datetime.now(UTC),
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/holds", holds_page)
    router.add_post("/holds/{patient}/reveal", reveal)
    router.add_post("/holds/{patient}/{action}", decide)
