"""The code systems lab results are coded in: LOINC (with the LOINC-FR table) and UCUM.

:func:`loinc_code_problem` checks a LOINC code's shape and Mod 10 check digit;
:class:`LoincTable` is the ANS's French display names of LOINC codes, and
:class:`UcumUnits` the ANS's list of UCUM units (where ``l`` and ``L`` are both the
liter). Catalogues (:mod:`streams.transcode.lab_catalogue`) map a laboratory's own
codes to these.

Errors of the lab reference data (catalogues, LOINC table, UCUM list)::

    CatalogueError            a catalogue, a directory or a reference file is unusable
     ├── ReferenceDataError   the LOINC table or the UCUM list is malformed (here)
     └── (in lab_catalogue)
         ├── InvalidCatalogue    a catalogue file's problems, each with its line
         ├── UnknownFacility     no catalogue loaded for a sending facility
         └── VersionConflict     a catalogue version loaded again with other content
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Final

from lxml import etree

_LOINC_SHAPE: Final = re.compile(r"([0-9]{1,7})-([0-9])")
#: LOINC codes whose published check digit disagrees with the Mod 10 rule: all deprecated
#: duplicates or errors, listed in the LOINC Users' Guide, appendix C.
LOINC_KNOWN_BAD_CHECK_DIGITS: Final = frozenset(
    {"11491-6", "11501-6", "5895-7", "5896-5", "5897-3", "5928-1", "6028-3"}
    | {"6415-5", "6580-7", "6645-7", "6646-5", "6647-3", "6648-1", "6649-9"}
)
#: A UCUM liter atom, with an optional prefix: UCUM defines both ``l`` and ``L`` as the liter.
_LITER_ATOM: Final = re.compile(r"(^|[/.(])(da|[khdcmunpf])?l(?=$|[/.)0-9])")


class CatalogueError(Exception):
    """A catalogue, a catalogue directory or a reference file cannot be used as it is."""


class ReferenceDataError(CatalogueError):
    """The LOINC table or the UCUM list is malformed."""


def loinc_check_digit(body: str) -> int:
    """The Mod 10 check digit of a LOINC code's digits (LOINC Users' Guide, appendix C)."""
    if not re.fullmatch(r"[0-9]+", body):
        raise ValueError(f"a LOINC code body is digits only, not {body!r}")
    from_right = body[::-1]
    odd, even = from_right[0::2], from_right[1::2]  # positions 1, 3, 5... and 2, 4...
    joined = even + str(int(odd) * 2)  # even-position digits prepended to 2 x odd ones
    total = sum(int(digit) for digit in joined)
    return (10 - total % 10) % 10  # distance to the next multiple of ten


def loinc_code_problem(code: str) -> str | None:
    """Why ``code`` is not a well-formed LOINC code with a right check digit; None if it is."""
    shape = _LOINC_SHAPE.fullmatch(code)
    if shape is None:
        return "not a LOINC code (1 to 7 digits, a hyphen, a check digit, e.g. 718-7)"
    expected = loinc_check_digit(shape[1])
    if code in LOINC_KNOWN_BAD_CHECK_DIGITS:
        return "a deprecated LOINC code (known bad check digit): use the code that replaces it"
    if int(shape[2]) != expected:
        return f"wrong check digit (Mod 10 of {shape[1]} is {expected}): a typing error?"
    return None


def valid_loinc_code(code: str) -> bool:
    return loinc_code_problem(code) is None


class LoincTable:
    """LOINC codes with their French display names (ANS translation)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = dict(names)

    @classmethod
    def from_csv(cls, text: str, *, source: str = "LOINC table") -> LoincTable:
        """Columns ``loinc_code,display_name_fr,...`` (others ignored), ``,``-separated."""
        reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
        if not {"loinc_code", "display_name_fr"} <= set(reader.fieldnames or ()):
            raise ReferenceDataError(f"{source}: needs the columns loinc_code,display_name_fr")
        names: dict[str, str] = {}
        for record in reader:
            code = (record["loinc_code"] or "").strip()
            name = (record["display_name_fr"] or "").strip()
            why = loinc_code_problem(code) or ("duplicate code" if code in names else None)
            if why or not name:
                where = f"{source} line {reader.line_num}"
                raise ReferenceDataError(f"{where}: {code!r}: {why or 'no display name'}")
            names[code] = name
        return cls(names)

    def display_name(self, code: str) -> str | None:
        return self._names.get(code.strip())

    def knows(self, code: str) -> bool:
        return code.strip() in self._names


def same_unit(a: str | None, b: str | None) -> bool:
    """Same unit: equal after trimming, where ``l`` and ``L`` are both UCUM's liter (mmol/l)."""
    if a is None or b is None:
        return a is None and b is None
    return _liter_as_l(a.strip()) == _liter_as_l(b.strip())


def _liter_as_l(unit: str) -> str:
    return _LITER_ATOM.sub(lambda m: f"{m[1]}{m[2] or ''}L", unit)


class UcumUnits:
    """The UCUM unit list used by the ANS (IHE SVS-like XML, one ``<row><code>`` per unit)."""

    def __init__(self, codes: Iterable[str]) -> None:
        self._codes = frozenset(code.strip() for code in codes if code.strip())
        self._spellings: dict[str, str] = {}
        for code in sorted(self._codes):
            canonical = _liter_as_l(code)
            if canonical == code or canonical not in self._spellings:
                self._spellings[canonical] = code

    @classmethod
    def from_xml(cls, content: bytes, *, source: str = "UCUM list") -> UcumUnits:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(content, parser)
        except etree.XMLSyntaxError as exc:
            raise ReferenceDataError(f"{source}: not well-formed XML ({exc})") from exc
        codes = [element.text or "" for element in root.iterfind("row/code")]
        if not any(code.strip() for code in codes):
            raise ReferenceDataError(f"{source}: no <row><code> unit found")
        return cls(codes)

    def valid(self, unit: str | None) -> bool:
        """The unit, trimmed, is in the list as written (UCUM is case-sensitive)."""
        return unit is not None and unit.strip() in self._codes

    def spelling(self, unit: str | None) -> str | None:
        """The list's spelling of the same unit (``mmol/l`` -> ``mmol/L``); None if absent."""
        if unit is None:
            return None
        return unit.strip() if self.valid(unit) else self._spellings.get(_liter_as_l(unit.strip()))
