"""Typed view of python-hl7's parse tree, message decoding and the MSH header.

python-hl7 splits the message; ``load_segments`` turns its untyped tree into
plain tuples of strings once (``Segment``) so that nothing untyped leaks past
this module. Escape sequences are decoded here rather than by python-hl7,
whose unescape logs whole field values (patient data) on malformed sequences.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import hl7

from producers.hl7.errors import Hl7ParseError, Hl7ValidationError

Rep = tuple[tuple[str, ...], ...]  # one repetition: components, each a tuple of subcomponents
FieldValue = tuple[Rep, ...]  # one field: its repetitions

#: MSH-18 values (HL7 table 0211) this receiver decodes; empty means UTF-8.
CHARSETS: Final[Mapping[str, str]] = MappingProxyType(
    {"": "utf-8", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "8859/15": "iso8859-15"}
)
_SEGMENT_ID_RE: Final = re.compile(r"[A-Z][A-Z0-9]{2}")
_LINE_BREAK: Final = re.compile(r"\r\n|\n")
_FRAMING: Final = b"\x0b\x1c\r\n \t"  # MLLP start/end bytes and surrounding blanks


@dataclass(frozen=True)
class MessageHeader:
    """What MSH says; also read best-effort from messages that fail to parse."""

    message_type: str
    trigger_structure: str
    control_id: str
    version: str
    processing_id: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    charset: str
    profile: str
    timestamp: str


@dataclass(frozen=True)
class Delimiters:
    field: str
    repetition: str
    component: str
    subcomponent: str
    escape: str


@dataclass(frozen=True)
class Segment:
    """One segment as plain strings; ``fields[n]`` is HL7 field n (MSH-1 included)."""

    name: str
    sequence: int
    fields: tuple[FieldValue, ...]

    def reps(self, num: int) -> FieldValue:
        return self.fields[num] if num < len(self.fields) else ()

    def get(self, num: int, comp: int = 1, sub: int = 1, rep: int = 1) -> str:
        reps = self.reps(num)
        return component(reps[rep - 1], comp, sub) if rep <= len(reps) else ""

    def render(self, num: int) -> str:
        """First repetition re-encoded with the standard ``^`` and ``&``."""
        reps = self.reps(num)
        comps = ["&".join(escape(s) for s in c).rstrip("&") for c in reps[0]] if reps else []
        return "^".join(comps).rstrip("^")

    def error(
        self, num: int | None, message: str, code: str, app: str | None = None
    ) -> Hl7ValidationError:
        where = self.name if num is None else f"{self.name}-{num}"
        return Hl7ValidationError(
            message,
            hl7_error_code=code,
            app_error_code=app,
            location=where,
            segment_sequence=self.sequence,
        )


def component(rep: Rep, comp: int = 1, sub: int = 1) -> str:
    if comp > len(rep) or sub > len(rep[comp - 1]):
        return ""
    return rep[comp - 1][sub - 1]


def escape(text: str) -> str:
    """Encode HL7 delimiters in ``text`` (standard ``|^~\\&``) as escape sequences."""
    table = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}
    return "".join(table.get(ch, ch) for ch in text)


def unescape(text: str, d: Delimiters) -> str:
    if d.escape not in text:
        return text
    table = {"F": d.field, "S": d.component, "R": d.repetition, "T": d.subcomponent}
    table |= {"E": d.escape, ".br": "\n"}

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in table:
            return table[code]
        if code[:1] == "X" and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", code[1:]):
            return bytes.fromhex(code[1:]).decode("latin-1")
        return ""  # formatting or charset switches: dropped

    esc = re.escape(d.escape)
    return re.sub(f"{esc}([^{esc}]*){esc}", replace, text)


def decode_message(raw: bytes) -> str:
    """Decode per MSH-18 and normalise every CR, LF or CRLF to one CR."""
    body = raw.strip(_FRAMING).removeprefix(codecs.BOM_UTF8)
    header = load_segments(normalise(body.decode("latin-1")).split("\r", 1)[0])[0]
    declared = header.get(18).strip()
    codec = CHARSETS.get(declared.upper())
    if codec is None:
        raise Hl7ParseError(
            "MSH-18 names a character set this receiver does not support; "
            "send 'UNICODE UTF-8' or '8859/15'",
            hl7_error_code="103",
            location="MSH-18",
        )
    try:
        return normalise(body.decode(codec))
    except UnicodeDecodeError:
        raise Hl7ParseError(
            f"the message bytes are not valid {declared or 'UTF-8'}; encode the message "
            "in the character set declared in MSH-18",
            hl7_error_code="102",
            location="MSH-18",
        ) from None


def normalise(text: str) -> str:
    """CRLF, LF and CR all end a segment; blank lines are dropped (linear time)."""
    lines = _LINE_BREAK.sub("\r", text.strip()).split("\r")
    return "\r".join(line for line in lines if line.strip())


def check_msh_start(text: str) -> None:
    if not text.startswith("MSH") or len(text) < 8:
        raise Hl7ParseError(
            "the message must start with an MSH segment", hl7_error_code="100", location="MSH"
        )
    sep = text[3]
    end = text.find(sep, 4)
    chars = text[4:end] if end > 0 else ""
    allowed = not sep.isalnum() and not sep.isspace()
    allowed = allowed and len(chars) in (4, 5) and len(set(chars + sep)) == len(chars) + 1
    if not allowed or any(c.isalnum() or c.isspace() for c in chars):
        raise Hl7ParseError(
            "MSH-1/MSH-2 must hold a field separator and 4 distinct encoding characters "
            "(usually |^~\\&)",
            hl7_error_code="102",
            location="MSH-2",
        )


def load_segments(text: str) -> tuple[Segment, ...]:
    check_msh_start(text)
    try:
        parsed: Any = hl7.parse(text)
        seps = str(parsed.separators)
        delims = Delimiters(seps[1], seps[2], seps[3], seps[4], str(parsed.esc))
        raw_segments = list(parsed)
    except Exception as exc:  # python-hl7 raises assorted errors on garbage
        raise Hl7ParseError(
            "the message cannot be split into HL7 segments", hl7_error_code="100"
        ) from exc
    counts: dict[str, int] = {}
    segments = []
    for position, raw in enumerate(raw_segments, start=1):
        name = _segment_name(raw, position)
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(name, counts[name], _convert_fields(raw, delims, name == "MSH")))
    return tuple(segments)


def _segment_name(raw: Any, position: int) -> str:
    name = str(raw[0][0]) if len(raw) and len(raw[0]) else ""
    if not _SEGMENT_ID_RE.fullmatch(name):
        raise Hl7ParseError(
            f"segment number {position} does not start with a segment id (3 capitals/digits)",
            hl7_error_code="100",
        )
    if name == "MSH" and position > 1:
        raise Hl7ParseError(
            f"segment number {position} is a second MSH: send one message at a time",
            hl7_error_code="100",
        )
    return name


def _convert_fields(raw: Any, delims: Delimiters, is_msh: bool) -> tuple[FieldValue, ...]:
    fields: list[FieldValue] = []
    for num, value in enumerate(raw):
        if is_msh and num in (1, 2):
            fields.append((((str(value[0]),),),))
        else:
            fields.append(_convert_field(value, delims))
    return tuple(fields)


def _convert_field(raw: Any, d: Delimiters) -> FieldValue:
    if isinstance(raw, str):
        return (((unescape(raw, d),),),)
    reps: list[Rep] = []
    for rep in raw:
        if isinstance(rep, str):
            reps.append(((unescape(rep, d),),))
            continue
        comps = (
            (unescape(c, d),) if isinstance(c, str) else tuple(unescape(str(s), d) for s in c)
            for c in rep
        )
        reps.append(tuple(comps))
    return tuple(reps)


def read_header(raw: bytes) -> MessageHeader | None:
    """MSH of ``raw`` best-effort (for the ACK of a message that failed); None if unreadable."""
    try:
        text = decode_message(raw)
    except Hl7ParseError:
        text = normalise(raw.strip(_FRAMING).decode("latin-1"))
    try:
        return read_msh(load_segments(text.split("\r", 1)[0])[0])
    except Hl7ParseError:
        return None


def read_msh(msh: Segment) -> MessageHeader:
    kind = f"{msh.get(9, 1)}^{msh.get(9, 2)}" if msh.get(9, 2) else msh.get(9, 1)
    return MessageHeader(
        message_type=kind,
        trigger_structure=msh.get(9, 3),
        control_id=msh.get(10),
        version=msh.get(12),
        processing_id=msh.get(11),
        sending_application=msh.render(3),
        sending_facility=msh.render(4),
        receiving_application=msh.render(5),
        receiving_facility=msh.render(6),
        charset=msh.get(18),
        profile=msh.render(21),
        timestamp=msh.get(7),
    )
