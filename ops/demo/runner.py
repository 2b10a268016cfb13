"""``relais demo``: the whole bus on this machine, a few documents, where they landed.

Needs nothing but the installed package: the broker is the bundled tansu, the
documents are synthetic (fictitious patients on the INS test OID).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from ops.console.accounts import add_account
from ops.demo.samples import (
    DOMINIQUE,
    IMAGING,
    LAB,
    LETTER,
    SARAH_LOU,
    UNQUALIFIED,
    VALIDATED,
    Kind,
    Patient,
    pdf_sample,
    sample,
)
from ops.index.model import Search
from ops.index.store import IndexStore
from ops.localstack import FINAL_OUTCOMES, Landing, LocalStack, read_landing, scrape
from ops.ports import free_port
from producers.hl7.errors import Hl7Error
from producers.publisher import Publisher
from relais.document_store.open import open_store
from relais.settings import Settings
from relais.signals import stop_on_signals
from sandboxes.mail import MailSandbox


@dataclass(frozen=True)
class DemoDocument:
    title: str
    kind: Kind
    patient: Patient
    sector: str
    broken: bool = False
    pdf: bool = False
    mail: bool = False  # also to a doctor's and the patient's MSSanté mailboxes


DOCTOR = "dr.martin@medecin.mssante.fr"
#: PRT RCT (the doctor's mailbox) and the MetaDMPMSS flags of a document also sent by mail.
MAIL_SEGMENTS = (
    "PRT||UC||RCT^^participation|801234567890^MARTIN^Jean^^^^^^"
    "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS" + "|" * 10 + f"^^X.400^{DOCTOR}\r"
    "OBX|20|CE|DESTMSSANTEPS^Destinataire MSSante PS^MetaDMPMSS||Y^^expandedYes-NoIndicator"
    "||||||F\r"
    "OBX|21|CE|DESTMSSANTEPAT^Destinataire MSSante patient^MetaDMPMSS||Y^^expandedYes-NoIndicator"
    "||||||F\r"
)

DOCUMENTS = (
    DemoDocument("lab result (CR-BIO) to the DMP and by MSSanté", LAB, DOMINIQUE, "LAB", mail=True),
    DemoDocument("imaging report (CR-IMG), ORU^R01", IMAGING, SARAH_LOU, "RADIOLOGY"),
    DemoDocument(
        "imaging report as a PDF, wrapped as CDA N1", IMAGING, SARAH_LOU, "RADIOLOGY", pdf=True
    ),
    DemoDocument("hospital letter (CDA N1 + PDF), MDM^T02", LETTER, DOMINIQUE, "HOSPITAL"),
    DemoDocument("lab result, identity VALI, qualified by INSi", LAB, VALIDATED, "LAB"),
    DemoDocument("lab result, identity only PROVISIONAL", LAB, UNQUALIFIED, "LAB"),
    DemoDocument("lab result, truncated CDA (the door)", LAB, SARAH_LOU, "LAB", broken=True),
)


def _message(n: int, doc: DemoDocument) -> bytes:
    if doc.pdf:
        return pdf_sample(doc.kind, doc.patient, n)
    raw = sample(doc.kind, doc.patient, n)
    if doc.broken:
        # Cut the base64 CDA in half: still valid base64, no longer well-formed XML.
        head, _, rest = raw.partition(b"^XML^Base64^")
        data, _, tail = rest.partition(b"|")
        raw = head + b"^XML^Base64^" + data[: len(data) // 2 // 4 * 4] + b"|" + tail
    if doc.mail:
        raw += MAIL_SEGMENTS.encode()
    return raw


def _step(text: str) -> None:
    click.echo(click.style("==> ", fg="cyan", bold=True) + text)


async def run_demo(settings: Settings, *, keep_running: bool = False) -> int:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM unwinds like Ctrl-C: the finally below stops every process
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    work = settings.process.data_dir / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    stack = LocalStack(work, prefix="demo", mail=True)
    started = time.monotonic()
    try:
        _step(
            "starting broker, topics, DMP, INSi and MSSanté sandboxes, 7 worker processes "
            f"(logs in {work})"
        )
        await stack.start()
        stack.spawn("index", "run")  # the document index, in SQLite under the stack's data dir
        await stack.wait_for_metrics()
        _step(f"stack up in {time.monotonic() - started:.1f} s; broker {stack.broker.bootstrap}")
        sent = await _send(stack)
        _step("waiting for every document to land")
        ids = [event_id for event_id, _ in sent]
        landing = await _landing(stack, ids)
        _report(stack, sent, landing)
        await _index_report(stack, ids)
        if keep_running:
            await _console(stack)
            await _wait_for_signal()
        return 0 if all(landing.where(i) != "in flight" for i in ids) else 1
    finally:
        _step("stopping workers, sandbox and broker")
        await stack.stop()
        click.echo(f"    done in {time.monotonic() - started:.1f} s")


async def _send(stack: LocalStack) -> list[tuple[str, DemoDocument]]:
    """Submit every demo document through the producer library: (event id, document)."""
    sent: list[tuple[str, DemoDocument]] = []
    async with Publisher(
        bootstrap=stack.settings.kafka.connection,
        keyring=stack.keyring,
        topic_prefix=stack.prefix,
        store=open_store(stack.settings),
    ) as publisher:
        for n, doc in enumerate(DOCUMENTS, start=1):
            try:
                event_id = (await publisher.submit_hl7(_message(n, doc), sector=doc.sector))[0]
            except Hl7Error as refused:  # the door: what the gateway answers AE
                click.echo(f"    REFUSED {doc.title:<39} {refused}")
                continue
            sent.append((event_id, doc))
            click.echo(f"    sent {doc.title:<42} event {event_id[:8]}")
    return sent


async def _landing(stack: LocalStack, ids: list[str]) -> Landing:
    """What the bus says of ``ids`` once each has landed, then been mailed and notified."""
    await read_landing(
        stack.settings.kafka.connection,
        stack.prefix,
        timeout_s=90,
        until=lambda lan: all(lan.where(i) != "in flight" for i in ids),
    )
    # then the mailboxes and the notifications (an embargoed one waits: not this demo's)
    return await read_landing(
        stack.settings.kafka.connection,
        stack.prefix,
        timeout_s=20,
        until=lambda lan: all(_routed_everywhere(lan, i) for i in ids),
    )


def _routed_to(landing: Landing, event_id: str) -> Counter[str]:
    """How many requests the route stage made per destination for ``event_id``."""
    for audit in landing.audits:
        if audit["event_id"] == event_id and audit["action"] == "ROUTED":
            labels = [o for o in str(audit["outcome"]).split(",") if o != "no-destination"]
            return Counter(label.split(":")[0] for label in labels)
    return Counter()


def _finals(landing: Landing, event_id: str, destination: str) -> list[dict[str, object]]:
    """Final statuses, and "scheduled" ones (a notification under embargo says until when)."""
    statuses = landing.statuses.get((event_id, destination), [])
    finals = [s for s in statuses if s["outcome"] in FINAL_OUTCOMES]
    settled = {s["request_id"] for s in finals}
    scheduled = [s for s in statuses if s["code"] == "EMBARGOED" and s["request_id"] not in settled]
    return finals + scheduled


def _routed_everywhere(landing: Landing, event_id: str) -> bool:
    routed = _routed_to(landing, event_id)
    return all(len(_finals(landing, event_id, d)) >= n for d, n in routed.items())


def _elsewhere(landing: Landing, event_id: str) -> str:
    """What happened besides the DMP: mails and the notification."""
    parts = []
    for destination, count in sorted(_routed_to(landing, event_id).items()):
        if destination == "DMP":
            continue
        done = [
            f"scheduled ({s['detail']})" if s["code"] == "EMBARGOED" else str(s["outcome"]).lower()
            for s in _finals(landing, event_id, destination)
        ]
        what = {"MSSANTE": "MSSanté mail", "NOTIFY": "patient notification"}[destination]
        pending = count - len(done)
        state = ", ".join(done) + (f"{', ' if done else ''}{pending} waiting" if pending else "")
        parts.append(f"{what}{'s' if count > 1 else ''}: {state}")
    return "; ".join(parts)


def _report(stack: LocalStack, sent: list[tuple[str, DemoDocument]], landing: Landing) -> None:
    _step("where each document landed")
    for event_id, doc in sent:
        click.echo(f"    {doc.title:<46} -> {landing.where(event_id)}")
        if more := _elsewhere(landing, event_id):
            click.echo(f"    {'':<46}    {more}")
    store = Path(stack.work_dir / "dmp-sandbox")
    click.echo(
        f"    DMP sandbox holds {len(stack.sandbox.filed)} documents "
        f"({stack.settings.dmp.url.removesuffix('/repository')}/documents, copies in {store})"
    )
    for letter in landing.dead:
        click.echo(
            f"    dead letter [{letter['stage']}] {letter['reason_code']}: {letter['reason']}"
        )
    if stack.mail_sandbox is not None:
        _mailboxes(stack.mail_sandbox, stack.work_dir / "mail-sandbox")
    _step("metrics (Prometheus text format, one endpoint per process)")
    for p in stack.processes:
        counts = _stage_counts(scrape(p.metrics_port))
        click.echo(f"    {p.name:<16} http://127.0.0.1:{p.metrics_port}/metrics   {counts}")


async def _index_report(stack: LocalStack, ids: list[str]) -> None:
    """What the document index (``relais index run``, SQLite) says of each document."""
    _step("the document index (what `relais trace` and the console read)")
    store = IndexStore.from_settings(stack.settings)
    store.create()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the index follows the topics within a second or so
        rows = [store.document(i) for i in ids]
        if all(r is not None and r.status not in {"received", "in-progress"} for r in rows):
            break
        await asyncio.sleep(0.5)
    for event_id, row in zip(ids, rows, strict=True):
        status = row.status if row is not None else "not indexed yet"
        sender = f"{row.sender} MSH-10 {row.message_control_id}" if row is not None else ""
        click.echo(f"    {event_id}  {status:<14} {sender}")
    state = store.state()
    click.echo(
        f"    {state.documents} documents, {state.steps} steps, {state.letters} dead letters in "
        f"{stack.settings.index.database_url(stack.settings.process.data_dir)}"
    )
    held = store.search(Search(status="held", limit=1))
    if held:
        click.echo(f"    held for identity: {held[0].event_id} (its journey is in the console)")


async def _console(stack: LocalStack) -> None:
    """The operator console on the stack, with a demo account made for this run."""
    data_dir = stack.settings.process.data_dir
    accounts = stack.settings.console.accounts_file(data_dir)
    password = secrets.token_urlsafe(12)
    add_account(accounts, "demo", password, ("operator", "identitovigilance"))
    port = free_port()
    stack.extra_environment["RELAIS_CONSOLE_PORT"] = str(port)
    await stack.serving(stack.spawn("console", "serve"))
    _step(f"operator console: http://127.0.0.1:{port}/  (name demo, password {password})")


def _mailboxes(sandbox: MailSandbox, store: Path) -> None:
    """What the MSSanté operator sandbox received, per mailbox (patient addresses masked)."""
    boxes = sandbox.mailboxes()
    click.echo(f"    MSSanté operator sandbox: {len(boxes)} mailboxes (mails in {store})")
    for box, mails in sorted(boxes.items()):
        local, _, domain = box.partition("@")
        shown = f"{local[:4]}…{local[-3:]}@{domain}" if domain.startswith("patient.") else box
        kinds = Counter(
            "document (" + ", ".join(str(a.get_filename()) for a in attachments) + ")"
            if (attachments := list(m.message.iter_attachments()))
            else "notification"
            for m in mails
        )
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        click.echo(f"      {shown:<40} {listed}")


def _stage_counts(samples: dict[str, float]) -> str:
    """``in 5, out 6, failed 1`` from a process's relais_stage_records_* counters."""
    totals = {"in": 0.0, "out": 0.0, "failed": 0.0}
    for name, value in samples.items():
        for kind in totals:
            if name.startswith(f"relais_stage_records_{kind}_total"):
                totals[kind] += value
    return ", ".join(f"{kind} {int(value)}" for kind, value in totals.items())


async def _wait_for_signal() -> None:
    stop = stop_on_signals()
    click.echo("    stack left running; Ctrl-C stops it", file=sys.stderr)
    await stop.wait()
