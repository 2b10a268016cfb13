"""Which destinations a ready document goes to, and the life cycle across them (pure).

Rules (volet CDA en HL7v2, MetaDMPMSS flags, STANDARDS.md §2 and §5):

* **DMP** — the INS is qualified (QUAL) and DESTDMP is not N;
* **MSSanté to professionals** — DESTMSSANTEPS=Y: one request per PRT RCT recipient;
* **MSSanté to the patient** — DESTMSSANTEPAT=Y and a qualified INS: the patient's
  mailbox ``<INS>@patient.mssante.fr``;
* **patient notification** — the document reaches the patient (DMP or patient mailbox)
  and the release decision lets the patient see it some day (the notify sink waits for
  the end of an embargo);
* **replacements** go to every destination the replaced version was routed to, plus
  what their own flags ask; **deletions** go to every destination the deleted version
  was routed to (the notify sink cancels a notification still under embargo).

The routing stage remembers, per document id, where each version went (its table,
``dest:<document id>``; recipient addresses are sealed in it). What is asked for
but cannot be done (no recipient for DESTMSSANTEPS, no qualified INS for the
patient's mailbox) is explained in the audit record, not guessed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from domain.metadata_flags import FLAG_DEFAULTS
from relais.envelope import Envelope, open_envelope, seal
from relais.keyring import Keyring

DMP: Final = "DMP"
MSSANTE: Final = "MSSANTE"
NOTIFY: Final = "NOTIFY"
PATIENT_DOMAIN: Final = "patient.mssante.fr"


@dataclass(frozen=True)
class Target:
    """One delivery: a destination and, for MSSanté, the recipient's address."""

    destination: str
    recipient: str | None = None
    patient_mailbox: bool = False

    @property
    def label(self) -> str:
        """What the audit may say about it: never an address."""
        if self.destination != MSSANTE:
            return self.destination
        if self.patient_mailbox:
            return "MSSANTE:patient"
        return f"MSSANTE:ps-{address_digest(self.recipient or '')}"

    @property
    def discriminator(self) -> str:
        """The part of the request id that tells two targets of one document apart."""
        if self.recipient is None:
            return self.destination
        return f"{self.destination}|{address_digest(self.recipient)}"


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    notes: tuple[str, ...] = field(default=())  # asked for but not done, and why


def address_digest(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()[:12]


def patient_mailbox(ins: str) -> str:
    return f"{ins}@{PATIENT_DOMAIN}"


def _flag(flags: Mapping[str, bool], name: str) -> bool:
    return bool(flags.get(name, FLAG_DEFAULTS[name]))


def plan(
    *,
    identity_status: str,
    flags: Mapping[str, bool],
    recipients: Sequence[str],
    ins: str | None,
    patient_may_see: bool,
    action: str,
) -> Plan:
    """The targets the flags and the identity give one document (before its history)."""
    qualified = identity_status == "QUAL"
    targets: list[Target] = []
    notes: list[str] = []
    if qualified and _flag(flags, "DESTDMP"):
        targets.append(Target(DMP))
    elif _flag(flags, "DESTDMP"):
        notes.append(f"DMP: not filed, the INS is {identity_status}, not qualified (QUAL)")
    if _flag(flags, "DESTMSSANTEPS"):
        unique = dict.fromkeys(r.strip() for r in recipients if r.strip())
        targets += [Target(MSSANTE, r) for r in unique]
        if not unique:
            notes.append(
                "MSSanté to professionals asked (DESTMSSANTEPS=Y) but no PRT RCT recipient"
            )
    if _flag(flags, "DESTMSSANTEPAT"):
        if qualified and ins:
            targets.append(Target(MSSANTE, patient_mailbox(ins), patient_mailbox=True))
        else:
            notes.append("MSSanté to the patient asked but the INS is not qualified: not sent")
    reaches_patient = any(t.destination == DMP or t.patient_mailbox for t in targets)
    if reaches_patient and patient_may_see and action != "DELETE":
        targets.append(Target(NOTIFY))
    return Plan(tuple(targets), tuple(notes))


# ------------------------------------------------------------------ history


def _sealing_id(document_id: str) -> str:
    return f"route-history:{document_id}"


def remember(
    state: MutableMapping[str, str], keyring: Keyring, document_id: str, targets: Sequence[Target]
) -> None:
    """Record where ``document_id`` went; addresses are sealed in the table."""
    rows = []
    for target in targets:
        sealed = None
        if target.recipient is not None:
            envelope = seal(
                keyring,
                target.recipient.encode(),
                event_id=_sealing_id(document_id),
                purpose="recipient",
            )
            sealed = [envelope.key_id, envelope.nonce.hex(), envelope.ciphertext.hex()]
        rows.append([target.destination, sealed, target.patient_mailbox])
    state[f"dest:{document_id}"] = json.dumps(rows)


def recall(state: Mapping[str, str], keyring: Keyring, document_id: str) -> tuple[Target, ...]:
    """Where ``document_id`` went, as remembered (empty when it is unknown)."""
    raw = state.get(f"dest:{document_id}")
    if not raw:
        return ()
    targets = []
    for destination, sealed, is_patient in json.loads(raw):
        recipient = None
        if sealed is not None:
            key_id, nonce, ciphertext = sealed
            plain = open_envelope(
                keyring,
                Envelope(key_id, bytes.fromhex(nonce), bytes.fromhex(ciphertext)),
                event_id=_sealing_id(document_id),
                purpose="recipient",
            )
            recipient = plain.decode()
        targets.append(Target(destination, recipient, bool(is_patient)))
    return tuple(targets)


def with_history(
    fresh: Plan, *, action: str, previous: Sequence[Target], parent_known: bool
) -> Plan:
    """Add the life cycle: replacements and deletions follow the replaced version."""
    if action == "SUBMIT":
        return fresh
    if action == "DELETE":
        if not parent_known:
            note = "deletion of a document Relais did not route: sent where the flags say"
            kept = tuple(t for t in fresh.targets if t.destination != NOTIFY)
            return Plan(kept, (*fresh.notes, note))
        # NOTIFY included: the notify sink cancels a notification still waiting (embargo)
        return Plan(tuple(previous), fresh.notes)
    merged = dict.fromkeys((*previous, *fresh.targets))
    notes = fresh.notes
    if not parent_known:
        notes = (*notes, "replaced version unknown to Relais: sent where the flags say")
    # a replacement notifies again only when the new version itself would
    keep_notify = any(t.destination == NOTIFY for t in fresh.targets)
    targets = tuple(t for t in merged if t.destination != NOTIFY or keep_notify)
    return Plan(targets, notes)
