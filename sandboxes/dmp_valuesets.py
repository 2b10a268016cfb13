"""The ANS value sets the DMP sandbox checks codes against, read from their SVS files.

The ANS publishes its value sets (JDV) as IHE SVS ``RetrieveValueSetResponse`` XML
(IHE ITI TF-2 §3.48); the data folder holds them under ``jdv/`` and
``ans-tcda/jeuxDeValeurs/`` (../shared/data/MANIFEST.md). Each metadata code is looked
up there: J07 typeCode, J08 confidentialityCode, J02 healthcareFacilityTypeCode, J04
practiceSettingCode. Three value sets the DMP requires have no SVS file in the data
folder: J57 classCode and J60 formatCode are then the project's domain vocabulary
(:mod:`domain.xds.codes`, transcribed from the NOS), and J59 contentTypeCode the codes of
the transmission guide's mapping (STANDARDS.md §4); :attr:`ValueSets.sources` says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from domain.xds.codes import CLASS_CODES, FORMAT_CODES
from sandboxes.dmp_xml import parse

SVS: Final = "urn:ihe:iti:svs:2008"
FOLDERS: Final = ("jdv", "ans-tcda/jeuxDeValeurs")
#: value set -> file name prefix in the data folder
FILES: Final = {
    "J07": "JDV_J07_XdsTypeCode",
    "J08": "JDV_J08_XdsConfidentialityCode",
    "J02": "JDV_J02_XdsHealthcareFacilityTypeCode",
    "J04": "JDV_J04_XdsPracticeSettingCode",
}
#: JDV_J59 (contentTypeCode, code system 1.2.250.1.213.2.2) has no SVS file here: the codes
#: the transmission guide maps PV1-2 to (STANDARDS.md §4) and the DRIM-M sample's ``04``.
CONTENT_TYPES: Final = frozenset(
    {(code, "1.2.250.1.213.2.2") for code in ("03", "04", "07", "19", "97")}
)


class ValueSetMissing(FileNotFoundError):
    """A value set file the sandbox needs is not in the data folder."""


@dataclass(frozen=True)
class ValueSets:
    """Codes by value set: ``(code, codeSystem)`` pairs."""

    codes: Mapping[str, frozenset[tuple[str, str]]]
    sources: Mapping[str, str] = field(default_factory=dict)

    def holds(self, name: str, code: str, system: str) -> bool:
        return (code, system) in self.codes.get(name, frozenset())

    @classmethod
    def load(cls, data_dir: Path) -> ValueSets:
        """The value sets of ``data_dir``; :class:`ValueSetMissing` names a missing one."""
        codes: dict[str, frozenset[tuple[str, str]]] = {}
        sources: dict[str, str] = {}
        for name, prefix in FILES.items():
            path = _find(data_dir, prefix)
            codes[name], sources[name] = read_svs(path.read_bytes()), str(path)
        codes["J57"] = frozenset((c.code, c.scheme) for c in CLASS_CODES.concepts)
        codes["J60"] = frozenset((c.code, c.scheme) for c in FORMAT_CODES.concepts)
        codes["J59"] = CONTENT_TYPES
        sources |= {
            "J57": "domain.xds.codes.CLASS_CODES",
            "J60": "domain.xds.codes.FORMAT_CODES",
            "J59": "sandboxes.dmp_valuesets.CONTENT_TYPES",
        }
        return cls(codes, sources)


def _find(data_dir: Path, prefix: str) -> Path:
    for folder in FOLDERS:
        found = sorted((data_dir / folder).glob(f"{prefix}_*.xml"))
        if found:
            return found[0]
    raise ValueSetMissing(f"no {prefix}_*.xml under {data_dir}/{{{','.join(FOLDERS)}}}")


def read_svs(data: bytes) -> frozenset[tuple[str, str]]:
    """The (code, codeSystem) pairs of an SVS RetrieveValueSetResponse."""
    root = parse(data)
    concepts = root.iterfind(f".//{{{SVS}}}ConceptList/{{{SVS}}}Concept")
    return frozenset((c.get("code", ""), c.get("codeSystem", "")) for c in concepts)
