"""``relais identity list|release|reject|unblock``: identitovigilance operations.

Registered on the main group by :mod:`ops.cli.main`. Reads the identity stage's
patients from its table changelog and sends the operator's decisions to the stage on
``identity.commands`` (:mod:`ops.identity.bus`); the stage, the only writer of the
patients' state, applies them in order with the patient's documents.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import TYPE_CHECKING, Any

import click

from ops.cli.context import settings_of

if TYPE_CHECKING:
    from ops.identity.bus import IdentityBus
    from ops.identity.views import PatientView
    from streams.identity.state import PatientState

OPERATOR_HELP = "who acts, written in the audit trail [default: RELAIS_OPERATOR]"
ACTIONS = {"release": "RELEASE", "reject": "REJECT", "unblock": "UNBLOCK"}


_PATIENT_LIKE = re.compile(r"\d{5,}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")


def _check_comment(comment: str | None) -> None:
    """The comment goes in clear to the audit trail: short, and no INS, NIR or date in it."""
    if comment and (len(comment) > 200 or _PATIENT_LIKE.search(comment)):
        raise click.UsageError(
            "--comment: at most 200 characters and no patient data (no number of 5 digits "
            "or more, no date); the audit already names the patient by its key"
        )


def _operator(ctx: click.Context, given: str | None) -> str:
    operator = (given or settings_of(ctx).identity.operator).strip()
    if not operator:
        raise click.ClickException(
            "no operator: give --operator NAME or set RELAIS_OPERATOR "
            "(every identity action is audited with who did it)"
        )
    return operator


def _bus(ctx: click.Context) -> IdentityBus:
    from ops.identity.bus import IdentityBus  # noqa: PLC0415 - fast --help
    from relais.contracts import Codec  # noqa: PLC0415

    s = settings_of(ctx)
    return IdentityBus(s.kafka.connection, s.kafka.prefix, Codec())


@click.group()
def identity() -> None:
    """Identitovigilance: the patients whose documents the identity stage holds or
    blocks, and what an operator decides about them.

    A block holds the documents that contradict the patient's reference identity (and
    the sender that sent them); other senders' documents that agree go on. Held
    documents expire after RELAIS_IDENTITY_HOLD_EXPIRY_S (dead letter
    identity-expired). Patients are shown by their pseudonymised key; --reveal shows
    the traits and is audited. Every action names its operator (--operator or
    RELAIS_OPERATOR) in the audit trail.

    \b
    relais identity list                     held and blocked patients
    relais identity list --reveal            ... with the traits of each held document
    relais identity release KEY [-e EVENT]   the operator vouches: the documents go on
    relais identity reject KEY [-e EVENT]    dead-lettered (identity-rejected), sender told
    relais identity unblock KEY              after correction: lift the block, re-check
    """


@identity.command("list")
@click.option("--reveal", is_flag=True, help="show each held document's traits (audited)")
@click.option("--operator", help=OPERATOR_HELP + "; required with --reveal")
@click.option("--blocked", "only_blocked", is_flag=True, help="only blocked patients")
@click.option("--json", "as_json", is_flag=True, help="one JSON array, for machines")
@click.pass_context
def identity_list(
    ctx: click.Context, reveal: bool, operator: str | None, only_blocked: bool, as_json: bool
) -> None:
    """List held and blocked patients, longest waiting first: pseudonymised key, how many
    documents, since when, why, from which senders, the block and its scope. Give
    `relais identity release|reject|unblock` the key (8 characters are enough)."""
    from ops.identity.bus import reveal_audit  # noqa: PLC0415
    from ops.identity.views import list_lines, patient_views  # noqa: PLC0415

    who = _operator(ctx, operator) if reveal else None
    bus = _bus(ctx)
    states, alerts = asyncio.run(_read(bus))
    views = [v for v in patient_views(states, alerts) if v.state.blocked or not only_blocked]
    opener = None
    if reveal and who is not None:
        opener = _opener(ctx)
        held = sum(len(v.state.held) for v in views)
        audit = reveal_audit(who, [v.key for v in views], held)
        asyncio.run(bus.send("AuditEvent", audit, key=audit["event_id"]))  # audited first
        click.echo(f"reveal audited (operator {who}, audit {audit['audit_id']})", err=True)
    if as_json:
        rows = [_row(v, opener) for v in views]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(list_lines(views, opener)))


async def _read(bus: IdentityBus) -> tuple[dict[str, PatientState], list[Any]]:
    states, alerts = await asyncio.gather(bus.states(), bus.alerts())
    return states, alerts


def _opener(ctx: click.Context) -> Any:
    from relais.contracts import Codec  # noqa: PLC0415
    from relais.keyring import KeyringError  # noqa: PLC0415
    from relais.keyring_source import load_keyring  # noqa: PLC0415
    from relais.patient_traits import open_traits  # noqa: PLC0415

    try:
        keyring = load_keyring(settings_of(ctx))
    except KeyringError as exc:
        raise click.ClickException(f"--reveal needs the keyring: {exc}") from None
    codec = Codec()

    def reveal(held: Any) -> dict[str, Any]:
        _, record = codec.decode(held.value, expected="DocumentSubmitted")
        return open_traits(record, keyring)

    return reveal


def _row(view: PatientView, opener: Any) -> dict[str, Any]:
    row = view.summary()
    if opener is not None:
        traits = {h.event_id: opener(h) for h in view.state.held}
        for document in row["documents"]:
            document["traits"] = traits[document["event_id"]]
    return row


def _action_command(action: str, summary: str) -> Any:
    """The command for one action: a patient key, the documents, the operator, a wait."""

    @click.argument("patient_key")
    @click.option(
        "-e",
        "--event",
        "event_ids",
        multiple=True,
        help="a held document's event id (see `relais identity list`); repeat for "
        "several; none: every held document of the patient",
    )
    @click.option("--operator", help=OPERATOR_HELP)
    @click.option("--comment", help="why, for the audit trail (no patient data)")
    @click.option(
        "--wait",
        "wait_s",
        type=click.FloatRange(min=0),
        default=15,
        show_default=True,
        help="seconds to wait for the identity stage to apply it; 0: do not wait",
    )
    @click.pass_context
    def command(ctx: click.Context, /, **options: Any) -> None:
        _act(ctx, ACTIONS[action], **options)

    command.__doc__ = summary
    return identity.command(action)(command)


def _act(
    ctx: click.Context,
    action: str,
    *,
    patient_key: str,
    event_ids: tuple[str, ...],
    operator: str | None,
    comment: str | None,
    wait_s: float,
) -> None:
    from ops.identity.bus import command_record  # noqa: PLC0415

    who = _operator(ctx, operator)
    bus = _bus(ctx)
    view = _target(bus, patient_key, event_ids, action)
    if action == "UNBLOCK":
        event_ids = ()
    elif not event_ids:  # "all" means what the operator was shown, never what came since
        event_ids = tuple(held.event_id for held in view.state.held)
        if not event_ids:
            raise click.UsageError(f"patient {view.key[:16]} has no held document to {action}")
    _check_comment(comment)
    command = command_record(view.key, action, who, event_ids=event_ids, comment=comment)
    asyncio.run(bus.send("IdentityCommand", command, key=view.key))
    count = len(event_ids) or len(view.state.held)
    click.echo(
        f"sent {action} for patient {view.key[:16]} ({count} held document(s)) "
        f"as operator {who}: command {command['event_id']}"
    )
    if wait_s > 0:
        _wait_and_report(bus, view, event_ids, wait_s)


def _wait_and_report(
    bus: IdentityBus, view: PatientView, event_ids: tuple[str, ...], wait_s: float
) -> None:
    """Wait until the stage changed the patient's state, then say what became of each."""
    before = view.state.to_bytes()

    def waiting(seconds: float) -> None:
        if int(seconds * 2) % 10 == 0:
            click.echo(f"waiting for the identity stage... {seconds:.0f} s", err=True)

    after = asyncio.run(
        bus.wait_for(view.key, lambda s: s.to_bytes() != before, timeout_s=wait_s, progress=waiting)
    )
    if after is None:
        click.echo(
            f"not applied within {wait_s:g} s: is the identity worker running? "
            "it applies the command when it runs (see `relais identity list`)",
            err=True,
        )
        sys.exit(1)
    click.echo("\n".join(_outcome_lines(view, after, event_ids)))


def _target(bus: IdentityBus, wanted: str, event_ids: tuple[str, ...], action: str) -> PatientView:
    from ops.identity.views import patient_views, select, unknown_documents  # noqa: PLC0415

    views = patient_views(asyncio.run(bus.states()))
    try:
        view = select(views, wanted)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    if unknown := unknown_documents(view, event_ids):
        raise click.ClickException(f"not held for this patient: {', '.join(unknown)}")
    if action == "UNBLOCK" and not view.state.blocked:
        raise click.ClickException(f"patient {view.key[:16]} is not blocked")
    if action != "UNBLOCK" and not view.state.held:
        raise click.ClickException(f"patient {view.key[:16]} holds no document")
    return view


def _outcome_lines(view: PatientView, after: PatientState, event_ids: tuple[str, ...]) -> list[str]:
    held_now = {h.event_id: h for h in after.held}
    targets = [h for h in view.state.held if not event_ids or h.event_id in event_ids]
    lines = []
    for h in targets:
        still = held_now.get(h.event_id)
        lines.append(
            f"  {h.event_id}  " + (f"still held: {still.reason_code}" if still else "done")
        )
    block = f"blocked ({after.blocked})" if after.blocked else "not blocked"
    lines.append(f"applied: patient {view.key[:16]} now {block}, {len(after.held)} held")
    return lines


_action_command(
    "release",
    """The operator vouches for the held documents' identity: each is decided again
    without the block and the comparison with the reference traits (the INS checks and
    the identity status still apply) and goes on, or stays held with its new reason.
    PATIENT_KEY: the key `relais identity list` shows (8+ characters).""",
)
_action_command(
    "reject",
    """Reject the held documents: each becomes a dead letter (stage identity, reason
    identity-rejected, the original DocumentSubmitted) and its sender is told (ZAM N).
    PATIENT_KEY: the key `relais identity list` shows (8+ characters).""",
)
_action_command(
    "unblock",
    """Lift the patient's block once its identity was corrected: the held documents
    are checked again in order; one that still contradicts the reference blocks again
    (reject or release it first). PATIENT_KEY: the key `relais identity list` shows.""",
)
