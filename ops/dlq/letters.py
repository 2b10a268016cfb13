"""Dead letters as an operator sees them: what failed, where, why — never whose or what.

Pure: the shell (:mod:`ops.dlq.shell`) reads the dead-letter topic and
opens each sealed original with the keyring; here a dead letter becomes a
:class:`LetterView` (the original is decoded only to learn its event id,
record type, sector and document id, which a dead letter does not always
carry), views are filtered (:class:`LetterFilter`), and listed or shown.

Shown by default: the stage, the reason, where the record came from, the
event and document ids, the sender facility, sizes and digests. Patient
identity (the ``patient`` part, sealed fields) and document content stay
hidden unless :func:`show_lines` is asked to ``reveal`` them.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from relais.contracts import Codec, ContractError, Record

HIDDEN = "<hidden: patient identity (--reveal to show)>"
_ENVELOPE_FIELDS = frozenset({"key_id", "nonce", "ciphertext"})


@dataclass(frozen=True)
class LetterView:
    """One dead letter with what its original says about itself (no patient data)."""

    dead_letter_id: str
    stage: str
    reason_code: str
    reason: str
    occurred_at: datetime
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    original_size: int
    original_sha256: str
    event_id: str | None = None
    record_type: str | None = None  # None: not an Avro record (e.g. HL7 v2 bytes)
    sector: str | None = None
    document_unique_id: str | None = None
    facility: str | None = None
    key: bytes | None = field(default=None, repr=False)  # the original's record key
    original: bytes | None = field(default=None, repr=False)
    problem: str | None = None  # why the original could not be opened

    def summary(self) -> dict[str, Any]:
        """The JSON-able fields an operator may see (``dlq list --json``)."""
        return {
            "dead_letter_id": self.dead_letter_id,
            "occurred_at": self.occurred_at.isoformat(),
            "stage": self.stage,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
            },
            "event_id": self.event_id,
            "record_type": self.record_type,
            "sector": self.sector,
            "document_unique_id": self.document_unique_id,
            "facility": self.facility,
            "original_size": self.original_size,
            "original_sha256": self.original_sha256,
            "original_readable": self.original is not None,
        }


def describe(
    letter: Record,
    *,
    key: bytes | None,
    original: bytes | None,
    problem: str | None = None,
    codec: Codec | None = None,
) -> LetterView:
    """The view of a decoded ``DeadLetter`` and its opened original (None if unopened)."""
    found: dict[str, Any] = {}
    if original is not None:
        found = _about_original(original, codec or Codec())
    return LetterView(
        dead_letter_id=letter["dead_letter_id"],
        stage=letter["stage"],
        reason_code=letter["reason_code"],
        reason=letter["reason"],
        occurred_at=letter["occurred_at"],
        source_topic=letter["source_topic"],
        source_partition=letter["source_partition"],
        source_offset=letter["source_offset"],
        original_size=letter["original_size"],
        original_sha256=letter["original_sha256"],
        event_id=letter["event_id"] or found.get("event_id"),
        record_type=found.get("record_type"),
        sector=found.get("sector"),
        document_unique_id=found.get("document_unique_id"),
        facility=found.get("facility"),
        key=key,
        original=original,
        problem=problem,
    )


def _about_original(original: bytes, codec: Codec) -> dict[str, Any]:
    try:
        record_type, record = codec.decode(original)
    except ContractError:
        header = hl7_header(original)
        return {"facility": header.get("MSH-4")} if header else {}
    document = record.get("document") if isinstance(record.get("document"), dict) else {}
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    return {
        "record_type": record_type,
        "event_id": record.get("event_id"),
        "sector": record.get("sector"),
        "document_unique_id": (document or {}).get("unique_id") or record.get("document_unique_id"),
        "facility": (source or {}).get("facility") or record.get("facility"),
    }


def hl7_header(raw: bytes) -> dict[str, str]:
    """The sender and message fields of an HL7 v2 message's MSH (no patient data), or {}."""
    text = raw.decode("utf-8", errors="replace").lstrip("\x0b")
    if not text.startswith("MSH") or len(text) < 8:
        return {}
    fields = re.split(r"[\r\n]+", text, maxsplit=1)[0].split(text[3])
    names = {3: "MSH-3", 4: "MSH-4", 9: "MSH-9", 10: "MSH-10", 12: "MSH-12"}
    return {name: fields[n - 1] for n, name in names.items() if n - 1 < len(fields)}


def hl7_segments(raw: bytes) -> list[str]:
    """The segment names of an HL7 v2 message, in order."""
    text = raw.decode("utf-8", errors="replace").strip("\x0b\x1c\r\n")
    return [line[:3] for line in re.split(r"[\r\n]+", text) if line.strip()]


# -- filters ---------------------------------------------------------------------------------
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 30m, 2h, 7d (ago) or 2025-03-01[T10:00[+01:00]]"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters an operator means; an empty part matches everything.

    Stages and reasons are shell patterns (``cda-*``); ``ids`` match a dead-letter
    id (or its first 8+ characters), an event id or a document unique id.
    ``replayed``: None for all, True for only replayed ones, False for never replayed.
    """

    stages: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    sectors: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[str] = frozenset()
    replayed: bool | None = None

    def is_empty(self) -> bool:
        return self == LetterFilter()

    def matches(self, view: LetterView, replayed: bool = False) -> bool:
        checks: list[Callable[[], bool]] = [
            lambda: not self.stages or _any_pattern(self.stages, view.stage),
            lambda: not self.reasons or _any_pattern(self.reasons, view.reason_code),
            lambda: not self.sectors or (view.sector or "").upper() in self.sectors,
            lambda: self.since is None or view.occurred_at >= self.since,
            lambda: self.until is None or view.occurred_at <= self.until,
            lambda: not self.ids or any(_names(view, i) for i in self.ids),
            lambda: self.replayed is None or self.replayed == replayed,
        ]
        return all(check() for check in checks)


def _any_pattern(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _names(view: LetterView, wanted: str) -> bool:
    if wanted in {view.event_id, view.document_unique_id}:
        return True
    return len(wanted) >= 8 and view.dead_letter_id.startswith(wanted)


def select(
    views: Iterable[LetterView], wanted: LetterFilter, replayed: Mapping[str, object]
) -> list[LetterView]:
    """The views ``wanted`` matches, oldest first (``replayed``: dead-letter ids replayed)."""
    chosen = [v for v in views if wanted.matches(v, v.dead_letter_id in replayed)]
    return sorted(chosen, key=lambda v: (v.occurred_at, v.dead_letter_id))


# -- listing and showing -------------------------------------------------------------------------
def when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def list_lines(views: Sequence[LetterView], replay_counts: Mapping[str, int]) -> list[str]:
    """A table: one dead letter a line (ids shortened to 8 characters; `show` takes them)."""
    if not views:
        return ["no dead letter matches"]
    rows = [("ID", "WHEN (UTC)", "STAGE", "REASON", "SECTOR", "EVENT", "REPLAYED")]
    for v in views:
        count = replay_counts.get(v.dead_letter_id, 0)
        rows.append(
            (
                v.dead_letter_id[:8],
                when(v.occurred_at),
                v.stage,
                v.reason_code,
                v.sector or "-",
                v.event_id or "-",
                f"{count}x" if count else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return [*lines, f"{len(views)} dead letter(s)"]


def count_lines(views: Sequence[LetterView]) -> list[str]:
    """How many dead letters per stage and reason, most first."""
    counts: dict[tuple[str, str], int] = {}
    for v in views:
        counts[(v.stage, v.reason_code)] = counts.get((v.stage, v.reason_code), 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"{n:6d}  {stage}: {reason}" for (stage, reason), n in ordered]


Opener = Callable[[Mapping[str, object], str, str], bytes]


def show_lines(
    view: LetterView,
    replays: Sequence[str],
    *,
    reveal: bool = False,
    opener: Opener | None = None,
    codec: Codec | None = None,
) -> list[str]:
    """Everything about one dead letter; the original's identity and content only if ``reveal``.

    ``replays`` are lines describing earlier replays; ``opener(envelope, event_id,
    purpose)`` opens sealed fields of the original when revealing.
    """
    lines = [
        f"dead letter   {view.dead_letter_id}",
        f"when          {when(view.occurred_at)}",
        f"stage         {view.stage}",
        f"reason        {view.reason_code}: {view.reason}",
        f"came from     {_place(view)}",
        f"event         {view.event_id or '-'}",
        f"document      {view.document_unique_id or '-'}",
        f"sector        {view.sector or '-'}",
        f"sender        {view.facility or '-'}",
        f"original      {view.original_size} bytes, sha256 {view.original_sha256}, "
        f"{view.record_type or 'not an Avro record'}",
    ]
    lines += [f"replayed      {r}" for r in replays] or ["replayed      never"]
    if view.original is None:
        return [*lines, f"the original cannot be opened: {view.problem or 'unknown reason'}"]
    lines.append("")
    lines += _original_lines(view, reveal=reveal, opener=opener, codec=codec or Codec())
    return lines


def _place(view: LetterView) -> str:
    if view.source_partition is None:
        return view.source_topic
    return f"{view.source_topic} partition {view.source_partition} offset {view.source_offset}"


def _original_lines(
    view: LetterView, *, reveal: bool, opener: Opener | None, codec: Codec
) -> list[str]:
    original = view.original or b""
    if view.record_type is None:
        header = hl7_header(original)
        if header:
            if reveal:
                text = original.decode("utf-8", errors="replace").strip("\x0b\x1c\r\n")
                return ["original HL7 v2 message:", *re.split(r"[\r\n]+", text)]
            fields = ", ".join(f"{k} {v}" for k, v in header.items())
            segments = " ".join(hl7_segments(original))
            return [f"original HL7 v2 message: {fields}", f"segments: {segments}", _ASK]
        if reveal:
            return ["original bytes (base64):", base64.b64encode(original).decode()]
        return ["original: not a record Relais knows, nor HL7 v2", _ASK]
    _, record = codec.decode(original)
    if reveal:
        shown = revealed(record, opener)
        return [f"original {view.record_type} (revealed):", *_json_lines(shown)]
    return [f"original {view.record_type}:", *_json_lines(masked(record)), _ASK]


_ASK = "(patient identity and content hidden: --reveal shows them)"


def _json_lines(value: Any) -> list[str]:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str).splitlines()


def _is_envelope(value: object) -> bool:
    return isinstance(value, dict) and set(value) >= _ENVELOPE_FIELDS


def masked(value: Any, name: str = "") -> Any:  # noqa: PLR0911 - a return per kind
    """A JSON-able copy with the patient, sealed fields and raw bytes replaced by notes."""
    if name == "patient":
        return HIDDEN
    if _is_envelope(value):
        return f"<sealed {name or 'field'}: {len(value['ciphertext'])} bytes>"
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, name) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def revealed(record: Record, opener: Opener | None) -> Any:
    """A JSON-able copy with sealed fields opened (identity as JSON, content as text)."""
    event_id = str(record.get("event_id") or "")

    def walk(value: Any, name: str) -> Any:  # noqa: PLR0911 - a return per kind
        if _is_envelope(value):
            if opener is None or not event_id:
                return f"<sealed {name}: cannot be opened here>"
            try:
                plain = opener(value, event_id, name)
            except Exception as exc:  # any envelope that does not open is said, not raised
                return f"<sealed {name}: {type(exc).__name__}>"
            return _plain(plain, name)
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, name) for v in value]
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, datetime):
            return value.isoformat()
        return value

    return walk(record, "")


def _plain(plain: bytes, purpose: str) -> Any:
    if purpose == "identity":
        try:
            return json.loads(plain)
        except ValueError:
            pass
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(plain)} bytes, base64> " + base64.b64encode(plain).decode()
