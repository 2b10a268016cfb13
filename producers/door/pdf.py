"""A PDF without active content, or why not (pure).

Refused when the file does not start with ``%PDF-`` or when one of its objects carries
active content: ``/JavaScript``, ``/JS``, ``/Launch``, ``/AA`` (additional actions),
``/SubmitForm``, ``/ImportData``, ``/RichMedia``, ``/EmbeddedFile``, or an
``/OpenAction`` other than a page view (``/GoTo``). Names hex-escaped with ``#xx`` count.

Where it looks: the object dictionaries, outside any stream body, and the objects packed
in compressed object streams (``/Type /ObjStm``), which is where a PDF 1.5+ keeps its
dictionaries. Page contents, images and fonts are not read: their bytes are data, and
random binary spells ``/JS`` now and then. Object streams are inflated lazily within a
total budget (:data:`INFLATE_BUDGET`): a PDF whose object streams inflate beyond it is
refused as too complex rather than expanded (a zip bomb costs nothing).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Final

ACTIVE: Final = frozenset(
    {"JavaScript", "JS", "Launch", "AA", "SubmitForm", "ImportData", "RichMedia", "EmbeddedFile"}
)
INFLATE_BUDGET: Final = 32 << 20  # bytes of object streams inflated, per document
_OBJECT_STREAM: Final = re.compile(
    rb"(<<(?:(?!<<|>>).|<<(?:(?!>>).)*>>)*>>)\s*stream\r?\n(.*?)endstream", re.DOTALL
)
_NAME: Final = re.compile(rb"/([A-Za-z0-9#]+)")
_OPEN_ACTION: Final = re.compile(rb"/OpenAction\s*(<<.*?>>|\[[^\]]*\]|\d+\s+\d+\s+R)", re.DOTALL)


class TooComplex(Exception):
    """The object streams inflate beyond the budget."""


def pdf_problems(content: bytes) -> list[str]:
    """Why a PDF may not be filed: not a PDF, too complex, or active content."""
    if content.lstrip()[:5] != b"%PDF-":
        return ["pdf-header: the document does not start with %PDF- (not a PDF)"]
    try:
        found = sorted(set(_active_names(content)))
    except TooComplex:
        return [
            f"pdf-too-complex: its object streams inflate beyond {INFLATE_BUDGET >> 20} MB; "
            "export a simpler PDF (PDF/A)"
        ]
    if found:
        names = ", ".join(f"/{n}" for n in found)
        return [f"pdf-active-content: the PDF carries {names}; export it without scripts/actions"]
    return []


def _active_names(content: bytes) -> Iterator[str]:
    outside = _OBJECT_STREAM.sub(lambda m: m.group(1), content)  # dictionaries, no bodies
    for chunk in (outside, *_object_streams(content)):
        for raw in _NAME.findall(chunk):
            if (name := _unescape(raw)) in ACTIVE:
                yield name
        for action in _OPEN_ACTION.findall(chunk):
            if b"/S" in action and b"/GoTo" not in action:
                yield "OpenAction"


def _object_streams(content: bytes) -> Iterator[bytes]:
    """The inflated bodies of ``/Type /ObjStm`` streams, lazily, within the budget."""
    budget = INFLATE_BUDGET
    for match in _OBJECT_STREAM.finditer(content):
        dictionary, body = match.group(1), match.group(2)
        if b"/ObjStm" not in dictionary.replace(b" ", b""):
            continue
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(body, budget + 1)
        except zlib.error:
            continue
        budget -= len(data)
        if budget < 0 or inflater.unconsumed_tail:
            raise TooComplex
        yield data


def _unescape(raw: bytes) -> str:
    """A PDF name with its ``#xx`` escapes decoded (``/Java#53cript`` is ``JavaScript``)."""
    text = raw.decode("latin-1")
    return re.sub(r"#([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
