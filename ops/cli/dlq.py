"""``relais dlq list|show|replay``: the dead letters of the bus, for the operator.

Registered on the main group by :mod:`ops.cli.main`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ops.cli.context import settings_of

if TYPE_CHECKING:
    from ops.dlq.letters import LetterFilter, LetterView
    from ops.dlq.replay import Planned, Replay
    from ops.dlq.shell import DlqBus
    from relais.keyring import Keyring

F = TypeVar("F", bound=Callable[..., Any])
SECTORS = ["HOSPITAL", "LAB", "RADIOLOGY", "CITY", "MSSANTE", "OTHER"]
#: dead letters `relais dlq list` reads from the index at most (in its time window)
LIST_LIMIT = 100_000


def _filters(command: F) -> F:
    """The selection options every dlq command shares: the command takes them as
    ``**filters`` and reads them with :func:`_selection`."""
    options = [
        click.option(
            "--stage",
            "stages",
            multiple=True,
            help="stage that gave up (identity, transcode, route, dmp-sink, mllp, ...); "
            "shell patterns allowed; repeat for several",
        ),
        click.option(
            "--reason",
            "reasons",
            multiple=True,
            help="reason code, e.g. undecryptable-field, patient-key-missing (replay once the "
            "key record is restored) or 'cda-*'; repeat for several",
        ),
        click.option(
            "--sector",
            "sectors",
            multiple=True,
            type=click.Choice(SECTORS, case_sensitive=False),
            help="sector of the document (read from the sealed original: needs the keyring)",
        ),
        click.option("--since", help="dead-lettered at or after: 30m, 2h, 7d (ago) or ISO 8601"),
        click.option("--until", help="dead-lettered at or before: same forms as --since"),
        click.option(
            "--replayed/--not-replayed",
            "replayed",
            default=None,
            help="only dead letters already replayed / never replayed",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _selection(
    *,
    stages: tuple[str, ...],
    reasons: tuple[str, ...],
    sectors: tuple[str, ...],
    since: str | None,
    until: str | None,
    replayed: bool | None,
    ids: tuple[str, ...] = (),
) -> LetterFilter:
    from ops.dlq.letters import LetterFilter, parse_when  # noqa: PLC0415

    now = datetime.now(UTC)
    try:
        return LetterFilter(
            stages=frozenset(stages),
            reasons=frozenset(reasons),
            sectors=frozenset(s.upper() for s in sectors),
            since=parse_when(since, now) if since else None,
            until=parse_when(until, now) if until else None,
            ids=frozenset(ids),
            replayed=replayed,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _keyring(ctx: click.Context, *, required: bool) -> Keyring | None:
    from relais.keyring import KeyringError  # noqa: PLC0415
    from relais.keyring_source import load_keyring  # noqa: PLC0415

    try:
        return load_keyring(settings_of(ctx))
    except KeyringError as exc:
        if required:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"note: {exc}\n      originals stay sealed: sectors and some event ids are unknown",
            err=True,
        )
        return None


def _bus(ctx: click.Context, keyring: Keyring | None) -> DlqBus:
    from ops.dlq.shell import DlqBus  # noqa: PLC0415
    from relais.contracts import Codec  # noqa: PLC0415

    s = settings_of(ctx)
    return DlqBus(s.kafka.connection, s.kafka.prefix, keyring, Codec())


async def _read(bus: DlqBus) -> tuple[list[LetterView], dict[str, list[Replay]]]:
    letters, replays = await asyncio.gather(bus.letters(), bus.replays())
    return letters, replays


@click.group()
def dlq() -> None:
    """Dead letters: the records a stage could not process, with the reason and the
    sealed original. List and filter them, show one (patient identity and content
    hidden unless --reveal), and replay them to the stage that failed once the cause
    is fixed. Reads RELAIS_BOOTSTRAP_SERVERS / RELAIS_TOPIC_PREFIX and the keyring
    (RELAIS_KEYRING_FILE) to open the originals.
    """


@dlq.command("list")
@_filters
@click.option("--json", "as_json", is_flag=True, help="one JSON array, for machines")
@click.option("--counts", is_flag=True, help="only how many per stage and reason")
@click.pass_context
def dlq_list(ctx: click.Context, /, *, as_json: bool, counts: bool, **filters: Any) -> None:
    """List dead letters, oldest first: id, time, stage, reason, sector, event, replays.
    No patient data is shown. Give `relais dlq show` an id from the first column. Reads the
    document index (RELAIS_INDEX_URL), brought up to date with the topics first."""
    from ops.cli.indexed import fresh_index  # noqa: PLC0415
    from ops.dlq.letters import count_lines, list_lines, select  # noqa: PLC0415
    from ops.index.model import LetterSearch  # noqa: PLC0415

    wanted = _selection(**filters)
    s = settings_of(ctx)
    store = fresh_index(s, _keyring(ctx, required=False))
    rows = store.letters(LetterSearch(since=wanted.since, until=wanted.until, limit=LIST_LIMIT))
    if len(rows) >= LIST_LIMIT:
        click.echo(
            f"only the {LIST_LIMIT} newest dead letters of the window were read: narrow it "
            "with --since/--until",
            err=True,
        )
    replays = {r.view.dead_letter_id: r.replays for r in rows if r.replays}
    readable = {r.view.dead_letter_id: r.readable for r in rows}
    chosen = select((r.view for r in rows), wanted, replays)
    if as_json:
        found = [
            {
                **v.summary(),
                "original_readable": readable[v.dead_letter_id],
                "replays": replays.get(v.dead_letter_id, 0),
            }
            for v in chosen
        ]
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    lines = count_lines(chosen) if counts else list_lines(chosen, replays)
    click.echo("\n".join(lines or ["no dead letter matches"]))


def _one(letters: list[LetterView], wanted: str) -> LetterView:
    from ops.dlq.letters import LetterFilter, when  # noqa: PLC0415

    if len(wanted) < 8:
        raise click.BadParameter("give at least the first 8 characters of the dead-letter id")
    found = [v for v in letters if LetterFilter(ids=frozenset({wanted})).matches(v)]
    if not found:
        raise click.ClickException(f"no dead letter {wanted} (see `relais dlq list`)")
    if len(found) > 1:
        names = "\n".join(f"  {v.dead_letter_id}  {when(v.occurred_at)}  {v.stage}" for v in found)
        raise click.ClickException(f"{wanted} names {len(found)} dead letters:\n{names}")
    return found[0]


@dlq.command("show")
@click.argument("dead_letter_id")
@click.option(
    "--reveal",
    is_flag=True,
    help="also show the original's patient identity and document content (opened with the "
    "keyring): health data on your screen, use only when you must",
)
@click.option(
    "--save",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="write the original's bytes (sealed parts included, as sent) to this file",
)
@click.pass_context
def dlq_show(ctx: click.Context, dead_letter_id: str, reveal: bool, save: Path | None) -> None:
    """Show one dead letter: stage, reason, where it came from, its replays, and the
    original record with the patient identity and sealed fields hidden. DEAD_LETTER_ID
    is the id (8 characters are enough) or the event id of a single dead letter."""
    from ops.dlq.letters import show_lines  # noqa: PLC0415
    from relais.envelope import Envelope, open_envelope  # noqa: PLC0415

    keyring = _keyring(ctx, required=reveal or save is not None)
    letters, replays = asyncio.run(_read(_bus(ctx, keyring)))
    view = _one(letters, dead_letter_id)

    def opener(envelope: Any, event_id: str, purpose: str) -> bytes:
        assert keyring is not None
        return open_envelope(
            keyring, Envelope.from_record(envelope), event_id=event_id, purpose=purpose
        )

    earlier = [r.line() for r in replays.get(view.dead_letter_id, [])]
    click.echo("\n".join(show_lines(view, earlier, reveal=reveal, opener=opener)))
    if save is not None:
        if view.original is None:
            raise click.ClickException(f"the original cannot be opened: {view.problem}")
        save.write_bytes(view.original)
        click.echo(f"original written to {save} ({len(view.original)} bytes)", err=True)


@dlq.command("replay")
@click.argument("dead_letter_ids", metavar="[DEAD_LETTER_ID]...", nargs=-1)
@_filters
@click.option("--all", "everything", is_flag=True, help="replay every dead letter (no filter)")
@click.option(
    "--again",
    is_flag=True,
    help="also send dead letters that were replayed before (refused otherwise)",
)
@click.option("--dry-run", is_flag=True, help="say what would be sent where; send nothing")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="seconds to wait for what becomes of each replayed record "
    "(delivered, held, dead-lettered again); 0: do not wait",
)
@click.option("--by", default=None, help="who replays, for the audit [default: your login]")
@click.option("--json", "as_json", is_flag=True, help="the report as JSON, for machines")
@click.pass_context
def dlq_replay(
    ctx: click.Context,
    /,
    *,
    dead_letter_ids: tuple[str, ...],
    everything: bool,
    again: bool,
    dry_run: bool,
    wait_s: float,
    by: str | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """Send dead letters' originals back to the topic they were read from, once their
    cause is fixed (same partition, same key: the stage sees them as before), and say
    what happened to each. Select by DEAD_LETTER_ID (8+ characters, event or document
    id) and/or the filters; --all for everything. A dead letter replayed before is
    refused unless --again; each replay is written to the audit topic (REPLAYED).
    Records that came from no topic (refused HL7 messages, quarantined mail) are not
    sent: their sender must send them again.

    Exit code: 0 when every selected dead letter was sent back (and, with --wait,
    none failed again or stayed without outcome); 1 otherwise.
    """
    wanted = _selection(**filters, ids=dead_letter_ids)
    if wanted.is_empty() and not everything:
        raise click.UsageError("say which dead letters: ids, filters (--stage, ...) or --all")
    bus = _bus(ctx, _keyring(ctx, required=True))
    planned, replays = _plan_replay(bus, wanted, again=again)
    report = asyncio.run(
        _replay(bus, planned, replays, dry_run=dry_run, wait_s=wait_s, by=by, quiet=as_json)
    )
    _echo_report(report, as_json=as_json, waited=wait_s > 0 and not dry_run)
    if any(not r["ok"] for r in report):
        sys.exit(1)


def _plan_replay(
    bus: DlqBus, wanted: LetterFilter, *, again: bool
) -> tuple[list[Planned], dict[str, list[Replay]]]:
    """The selected dead letters, each with where it goes back to or why it does not."""
    from ops.dlq.letters import select  # noqa: PLC0415
    from ops.dlq.replay import plan  # noqa: PLC0415

    letters, replays = asyncio.run(_read(bus))
    chosen = select(letters, wanted, replays)
    if not chosen:
        raise click.ClickException("no dead letter matches (see `relais dlq list`)")
    return plan(chosen, replays, topics=bus.topics(), again=again), replays


async def _replay(
    bus: DlqBus,
    planned: list[Planned],
    replays: dict[str, list[Replay]],
    *,
    dry_run: bool,
    wait_s: float,
    by: str | None,
    quiet: bool,
) -> list[dict[str, Any]]:
    from ops.dlq.replay import Sent  # noqa: PLC0415
    from ops.dlq.report import report_row  # noqa: PLC0415

    def sent_one(p: Planned, s: Sent) -> None:
        if not quiet:
            click.echo(
                f"sent back {p.view.dead_letter_id[:8]} -> {s.topic} "
                f"partition {s.partition} offset {s.offset}",
                err=True,
            )

    def waited(seconds: float) -> None:
        if not quiet and int(seconds) % 5 == 0:
            click.echo(f"waiting for outcomes... {seconds:.0f} s", err=True)

    starts = await bus.outcome_offsets()
    sent: dict[str, Sent] = {}
    if not dry_run:
        who = by or getpass.getuser()
        done = await bus.send_back(planned, replays, by=who, sent_one=sent_one)
        sent = {s.dead_letter_id: s for s in done}
    outcomes = {}
    if sent and wait_s > 0:
        outcomes = await bus.follow(list(sent.values()), starts, timeout_s=wait_s, progress=waited)
    return [
        report_row(p, sent.get(p.view.dead_letter_id), outcomes, dry_run=dry_run, wait_s=wait_s)
        for p in planned
    ]


def _echo_report(report: list[dict[str, Any]], *, as_json: bool, waited: bool) -> None:
    """The replay report as JSON, or a line per dead letter and how many were sent back."""
    from ops.dlq.report import report_lines  # noqa: PLC0415

    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(report_lines(report, waited=waited)))
