"""``load_segments`` splits exactly as python-hl7 0.4 did, in linear time.

The reference below is the former implementation (python-hl7's tree, converted);
hypothesis compares both on messages built from delimiters, escapes, segment ids
and line breaks, including the quirks (BHS/FHS headers, unended MSH-2, ``~`` in
a segment id).
"""

from __future__ import annotations

import codecs
import re
import time
from typing import Any

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.hl7.errors import Hl7Error, Hl7ParseError
from producers.hl7.message import parse_message
from producers.hl7.segments import (
    CHARSETS,
    Delimiters,
    FieldValue,
    Rep,
    Segment,
    check_msh_start,
    decode_message,
    load_segments,
    normalise,
    read_header,
    read_msh,
    unescape,
)


def _reference_load(text: str) -> tuple[Segment, ...]:
    check_msh_start(text)
    try:
        parsed: Any = hl7.parse(text)
        seps = str(parsed.separators)
        delims = Delimiters(seps[1], seps[2], seps[3], seps[4], str(parsed.esc))
        raw_segments = list(parsed)
    except Exception as exc:
        raise Hl7ParseError("the message cannot be split into HL7 segments") from exc
    counts: dict[str, int] = {}
    segments = []
    for position, raw in enumerate(raw_segments, start=1):
        name = str(raw[0][0]) if len(raw) and len(raw[0]) else ""
        if not __import__("re").fullmatch(r"[A-Z][A-Z0-9]{2}", name):
            raise Hl7ParseError(f"segment number {position} does not start with a segment id")
        if name == "MSH" and position > 1:
            raise Hl7ParseError(f"segment number {position} is a second MSH")
        counts[name] = counts.get(name, 0) + 1
        fields = _reference_fields(raw, delims, name == "MSH")
        segments.append(Segment(name, counts[name], fields))
    return tuple(segments)


def _reference_fields(raw: Any, d: Delimiters, is_msh: bool) -> tuple[FieldValue, ...]:
    fields: list[FieldValue] = []
    for num, value in enumerate(raw):
        if is_msh and num in (1, 2):
            fields.append((((str(value[0]),),),))
        elif isinstance(value, str):
            fields.append((((unescape(value, d),),),))
        else:
            reps: list[Rep] = []
            for rep in value:
                if isinstance(rep, str):
                    reps.append(((unescape(rep, d),),))
                    continue
                reps.append(
                    tuple(
                        (unescape(c, d),)
                        if isinstance(c, str)
                        else tuple(unescape(str(s), d) for s in c)
                        for c in rep
                    )
                )
            fields.append(tuple(reps))
    return tuple(fields)


def _outcome(load: Any, text: str) -> object:
    try:
        return load(text)
    except Hl7ParseError as exc:
        return ("error", str(exc).split(" does not", 1)[0].split(" is a", 1)[0])


_PIECES = st.sampled_from(
    ["|", "^", "~", "&", "\\", "\r", "MSH", "BHS", "FHS", "PID", "OBX", "X", "a", "1", " ", "#"]
)
_HEADERS = st.sampled_from(["MSH|^~\\&|", "MSH|^~\\&#|", "MSH#^~\\&#", "MSH|^~\\&", "MSH|"])


@settings(max_examples=600, deadline=None)
@given(head=_HEADERS, body=st.lists(_PIECES, max_size=40))
def test_splits_as_python_hl7(head: str, body: list[str]) -> None:
    text = head + "".join(body)
    try:
        check_msh_start(text)
    except Hl7ParseError:
        return  # refused before splitting, by both
    assert _outcome(load_segments, text) == _outcome(_reference_load, text)


def _reference_decode(raw: bytes) -> str:
    body = raw.strip(b"\x0b\x1c\r\n \t").removeprefix(codecs.BOM_UTF8)
    header = _reference_load(normalise(body.decode("latin-1")).split("\r", 1)[0])[0]
    declared = header.get(18).strip()
    codec = CHARSETS.get(declared.upper())
    if codec is None:
        raise Hl7ParseError("charset", hl7_error_code="103")
    try:
        return normalise(body.decode(codec))
    except UnicodeDecodeError:
        raise Hl7ParseError("bytes", hl7_error_code="102") from None


def _reference_header(raw: bytes) -> object:
    try:
        text = _reference_decode(raw)
    except Hl7ParseError:
        text = normalise(raw.strip(b"\x0b\x1c\r\n \t").decode("latin-1"))
    try:
        return read_msh(_reference_load(text.split("\r", 1)[0])[0])
    except Hl7ParseError:
        return None


def _code(call: Any, raw: bytes) -> object:
    try:
        return call(raw)
    except Hl7ParseError as exc:
        return ("error", exc.hl7_error_code)


_RAW_PIECES = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\r\n",
        b" ",
        b"\t",
        b"\x1c",
        b"|",
        b"^",
        b"~",
        b"&",
        b"\\",
        b"A",
        b"\xe9",
        b"\xc3\xa9",
        b"PID|1",
        b"UNICODE UTF-8",
        b"8859/1",
        b"8859/15",
        b"X",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    lead=st.sampled_from([b"", b"\x0b", b"\r\n", b" \n", codecs.BOM_UTF8]),
    msh18=st.sampled_from(
        [b"", b"UNICODE UTF-8", b"8859/1", b"8859/15", b"ASCII", b"unicode utf-8"]
    ),
    body=st.lists(_RAW_PIECES, max_size=30),
)
def test_decodes_and_reads_headers_as_before(lead: bytes, msh18: bytes, body: list[bytes]) -> None:
    """Line breaks, blanks, BOM, charsets: decode_message and read_header as before."""
    raw = lead + b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5|||||FRA|" + msh18 + b"".join(body)
    assert _code(decode_message, raw) == _code(_reference_decode, raw)
    assert read_header(raw) == _reference_header(raw)
    assert read_header(b"".join(body)) == _reference_header(b"".join(body))


_FIELDS = st.lists(
    st.sampled_from(
        [
            "",
            "A",
            "B^C",
            "D~E^F",
            "G&H",
            "\\F\\",
            "2.5",
            "^",
            "A^^",
            "^&^",
            "&",
            " ",
            "~^",
            "A&&^&",
            "&\\T\\&",
        ]
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(fields=_FIELDS, tail=st.sampled_from(["", "\rPID|1", "|" * 50]))
def test_reads_the_header_as_before(fields: list[str], tail: str) -> None:
    """The header is read from the MSH cut after MSH-22: the same values as from all of it."""
    raw = ("MSH|^~\\&|" + "|".join(fields) + tail).encode()
    first_line = normalise(raw.decode()).split("\r", 1)[0]
    assert read_header(raw) == read_msh(_reference_load(first_line)[0])


@pytest.mark.parametrize(
    "text",
    [
        "MSH|^~\\&|A|B\rPID|1||12^^^X&1.2&ISO^PI~34||DOE^JOHN^^^^^L\rOBX|1|ED|x^y^z||^A^PDF^B^ZZ",
        "MSH|^~\\&|A\rBHS|^~\\&|x^y\rFHS|\rPID~1|a",
        "MSH|^~\\&|A\rBHS#x|y\rZZZ|\\F\\\\S\\\\X41\\",
        "MSH|^~\\&|A\rZZZ",
        "MSH|^~\\&|A\rMSH|^~\\&|B",
        "MSH|^~\\&|A\r|x",
    ],
)
def test_known_shapes(text: str) -> None:
    assert _outcome(load_segments, text) == _outcome(_reference_load, text)


@pytest.mark.parametrize("filler", ["~", "^", "|", "&"])
def test_a_pathological_5_mb_message_is_refused_in_linear_time(filler: str) -> None:
    """5 MB of one delimiter used to cost 25-30 s of CPU (python-hl7 objects, then GC passes,
    growing faster than the message): 5 MB now costs about five times 1 MB, not 25."""
    raw = b"MSH|^~\\&|APP|FAC|R|R|20240101||ORU^R01|C1|P|2.5\rPID|1||1^^^X^PI||"

    def cost(size: int) -> float:
        started = time.process_time()
        with pytest.raises(Hl7Error):
            parse_message(raw + filler.encode() * size)
        return time.process_time() - started

    small, large = cost(1_000_000), cost(5_000_000)
    assert large < 10 * max(small, 0.01)  # linear: ~5x (quadratic would be ~25x)


@given(st.text(alphabet=st.sampled_from(["\r", "\n", " ", "\t", "A", "|", "^"]), max_size=60))
def test_normalise_ends_segments_at_crlf_lf_or_cr_and_drops_blank_ones(text: str) -> None:
    expected = "\r".join(
        line for line in re.sub(r"\r\n|\n", "\r", text.strip()).split("\r") if line.strip()
    )
    assert normalise(text) == expected
