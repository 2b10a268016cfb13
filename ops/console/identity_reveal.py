"""A document's patient identity, revealed on its journey page (an explicit, audited act).

The console shows a document's patient by its pseudonymised key only. An operator with
one of :data:`ROLES` may ask for the identity, with a reason (the reasons' patient-data
filter applies): the audit event is written first, in the document's journey (component
``console``, outcome ``revealed:patient-identity``, the document and the reason, never
the identity), and nothing is shown when it cannot be written. Then the document's
``DocumentSubmitted`` record is read where its producer put it
(:meth:`ops.console.bus.ConsoleBus.submitted`: the partition of its patient key, from a
few seconds before it was received, a bounded read), and its sealed traits are opened with
the keyring as ``relais identity list --reveal`` opens them. Nothing of it is logged.

Pure parts: :func:`may_reveal`, :func:`past_retention`, :func:`since_ms`,
:func:`reveal_audit`, :func:`identity_fields`; thin: :func:`reveal`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ops.console.accounts import Operator
from ops.console.app import console_of, index_call, operator_of, render
from ops.console.bus import console_audit
from ops.console.errors import Refused
from ops.console.letters import audited
from ops.console.views import checked_text
from ops.identity.views import TRAITS
from ops.index.model import DocumentRow
from relais.contracts import Record
from relais.topics import SUBMITTED

#: the roles that may reveal a document's patient identity (either one)
ROLES = ("identitovigilance", "operator")
OUTCOME = "revealed:patient-identity"
LOOKBACK = timedelta(seconds=5)  # the record's time is the producer's, near received_at
READ_LIMIT = 2_000  # records read at most from the seek
READ_TIMEOUT_S = 30.0
RETENTION = timedelta(milliseconds=int(SUBMITTED.configs["retention.ms"]))
LABELS = {
    "ins": "INS",
    "birth_name": "Birth name",
    "given_names": "Given names",
    "birth_date": "Birth date",
    "sex": "Sex",
    "birthplace_code": "Birthplace code",
}


def may_reveal(operator: Operator) -> bool:
    return any(operator.may(role) for role in ROLES)


def past_retention(received_at: datetime, now: datetime) -> bool:
    """Whether the broker no longer keeps the document's record (its topic's retention)."""
    return now - _aware(received_at) > RETENTION


def since_ms(received_at: datetime) -> int:
    """Where to start reading: a few seconds before the document was received (ms)."""
    return int((_aware(received_at) - LOOKBACK).timestamp() * 1000)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # the index keeps UTC


def reveal_audit(operator: str, row: DocumentRow, reason: str, now: datetime) -> Record:
    """The audit event of the reveal, in the document's journey: who, which document, why
    (the patient by its key's first 16 characters; never the identity)."""
    return console_audit(
        operator=operator,
        event_id=row.event_id,
        outcome=OUTCOME,
        detail=f"patient identity of document {row.event_id} revealed\n"
        f"patient {(row.patient_key or '-')[:16]}\nby {operator}\nreason: {reason}",
        now=now,
        document_unique_id=row.unique_id,
    )


def identity_fields(traits: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The traits shown, in :data:`ops.identity.views.TRAITS`' order, with their labels."""
    return [(LABELS.get(t, t), _text(traits.get(t))) for t in TRAITS]


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _checks(request: web.Request, form: Mapping[str, Any]) -> tuple[Operator, str]:
    """The operator (one of :data:`ROLES`), the checked reason, and the keyring there."""
    operator = operator_of(request)
    if not may_reveal(operator):
        raise web.HTTPForbidden(
            text=f"refused: your account ({operator.name}) lacks the role operator or "
            "identitovigilance; an administrator gives it with relais console account add "
            "--role identitovigilance"
        )
    try:
        reason = checked_text(form.get("reason"), "reason", required=True)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    assert reason is not None
    console = console_of(request)
    if console.keyring_problem is not None or console.bus.keyring is None:
        raise Refused(
            f"revealing the patient identity needs the keyring: {console.keyring_problem}"
        )
    return operator, reason


async def _document(request: web.Request) -> DocumentRow:
    wanted = request.match_info["document"]
    row = await index_call(request, console_of(request).index.document, wanted)
    if row is None:
        raise web.HTTPNotFound(text=f"no document {wanted} in the index")
    assert isinstance(row, DocumentRow)
    if not row.patient_key or row.received_at is None:
        raise Refused(f"document {row.event_id}: the index knows no patient key for it yet")
    return row


async def reveal(request: web.Request) -> web.StreamResponse:
    """Audit, find the document's record, open its traits, show them (``no-store``)."""
    operator, reason = _checks(request, await request.post())
    row = await _document(request)
    assert row.patient_key is not None
    assert row.received_at is not None
    now = datetime.now(UTC)
    if past_retention(row.received_at, now):
        raise Refused(
            f"document {row.event_id} was received on {row.received_at:%Y-%m-%d}, past the "
            f"retention of {SUBMITTED.suffix} ({RETENTION.days} days): its identity is no "
            "longer on the bus; nothing was shown"
        )
    console = console_of(request)
    audit = reveal_audit(operator.name, row, reason, now)
    await audited(console.bus.audit(audit), "reveal")
    traits = await opened_traits(console.bus, row)
    response = render(
        request,
        "identity.html",
        title=f"Patient identity of {row.event_id}",
        row=row,
        fields=identity_fields(traits),
        audit=audit,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def opened_traits(bus: Any, row: DocumentRow) -> dict[str, Any]:
    """The patient's traits from the document's sealed identity (refused: not found)."""
    from relais.keyring import warm_patient_key  # noqa: PLC0415
    from relais.patient_traits import open_traits  # noqa: PLC0415

    assert row.patient_key is not None
    assert row.received_at is not None
    record = await bus.submitted(
        row.patient_key,
        row.event_id,
        since_ms(row.received_at),
        limit=READ_LIMIT,
        timeout_s=READ_TIMEOUT_S,
    )
    if record is None:
        raise Refused(
            f"document {row.event_id}: its record was not found on the bus near its "
            f"reception (read {READ_LIMIT} records at most; retention?); nothing was shown"
        )
    try:
        await warm_patient_key(bus.keyring, row.patient_key, create=False)
        return await asyncio.to_thread(open_traits, record, bus.keyring)
    except Exception as exc:  # a key gone (erased patient), a keyring without it
        raise Refused(
            f"document {row.event_id}: its sealed identity did not open ({type(exc).__name__}): "
            "check RELAIS_KEYRING_FILE (and RELAIS_PATIENT_KEYS); nothing was shown"
        ) from None


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/documents/{document}/reveal", reveal)
