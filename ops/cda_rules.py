"""The ANS's own CDA conformance rules, run as the Ségur référencement runs them.

The rules are the ANS's schematrons (``TestContenuCDA``: ``schematrons/`` and the value sets
in ``jeuxDeValeurs/`` they read): a model schematron per document model
(``CI-SIS_BIO-CR-BIO_2024.01.sch``...), ``profils/IHE.sch`` and
``profils/CI-SIS_ModelesDeContenusCDA.sch`` for every document. They are compiled with the ISO
schematron engine the rules ship (``schematrons/moteur/``: include, abstract expansion, SVRL
for XSLT 2) by an XSLT 2 processor, Saxon (``saxonche``, the ``rules`` extra), in a private
copy of the rules folder: the compiled stylesheets read the value sets by relative paths,
and the folder given may be read-only.

Which model schematron applies is read from the document: a CDA with a ``nonXMLBody`` (N1)
has none; a structured one is judged by the model of its type code (:data:`MODELS`). The
report lists every failed rule (a failed ``assert``, or a fired ``report``: the ANS states
errors both ways) with the rule set, the location and the rule's own text.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from domain.document_id import HL7V3, safe_parser

__all__ = ["MODELS", "AnsRules", "Finding", "RulesError"]

#: LOINC type code of a structured (N3) document -> its model schematron (schematrons/)
MODELS = {
    "11502-2": "CI-SIS_BIO-CR-BIO_2024.01.sch",  # CR d'examens biologiques
    "18748-4": "CI-SIS_IMG-CR-IMG_2024.01.sch",  # CR d'imagerie médicale
    "11490-0": "CI-SIS_LDL-SES_2022.01.sch",  # lettre de liaison à la sortie
}
PROFILES = ("profils/IHE.sch", "profils/CI-SIS_ModelesDeContenusCDA.sch")
_ENGINE = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
_SVRL = "http://purl.oclc.org/dsdl/svrl"
#: role / flag values of a rule that informs or warns rather than fails.
_ADVISORY = frozenset({"warning", "warn", "info", "information", "informational", "hint"})


class RulesError(ValueError):
    """The rules folder cannot be used; the message says what it lacks."""


@dataclass(frozen=True)
class Finding:
    """One failed rule (assert or report): which rule set, where, the rule's own text."""

    rules: str
    location: str
    text: str

    def __str__(self) -> str:
        return f"{self.rules}: {self.text} (at {self.location})"


class AnsRules:
    """The ANS rules of one folder, compiled on first use; use as a context manager."""

    def __init__(self, rules_dir: Path) -> None:
        if not (rules_dir / "schematrons" / "moteur" / _ENGINE[0]).is_file():
            raise RulesError(
                f"{rules_dir} holds no ANS rules: give the folder with schematrons/ and "
                "jeuxDeValeurs/ (ansforge/TestContenuCDA-3-0, ../shared/data/ans-tcda)"
            )
        self._source = rules_dir
        self._work: tempfile.TemporaryDirectory[str] | None = None
        self._processor: Any = None
        self._compiled: dict[str, Any] = {}

    def __enter__(self) -> AnsRules:
        from saxonche import PySaxonProcessor  # noqa: PLC0415 (an extra: relais[rules])

        self._work = tempfile.TemporaryDirectory(prefix="relais-ans-rules-")
        shutil.copytree(self._source, Path(self._work.name), dirs_exist_ok=True)
        for path in Path(self._work.name).rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)  # a read-only source stays read-only
        self._processor = PySaxonProcessor(license=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._compiled.clear()
        self._processor = None
        if self._work is not None:
            self._work.cleanup()

    @property
    def _schematrons(self) -> Path:
        if self._work is None:
            raise RuntimeError("use AnsRules as a context manager")
        return Path(self._work.name) / "schematrons"

    def rule_sets(self, document: bytes) -> list[str]:
        """The schematrons that judge ``document``: its model's (if any), then the profiles."""
        return _rule_sets(etree.fromstring(document, safe_parser()))

    def check(self, document: bytes) -> list[Finding]:
        """Every failed rule of every rule set that judges ``document`` (one finding,
        and no rule run, when it is not well-formed XML)."""
        try:
            root = etree.fromstring(document, safe_parser())
        except etree.XMLSyntaxError as exc:
            return [Finding("XML", f"line {exc.lineno}", f"not well-formed XML: {exc.msg}")]
        node = self._processor.parse_xml(xml_text=etree.tostring(root, encoding="unicode"))
        findings: list[Finding] = []
        for rules in _rule_sets(root):
            svrl = self._compile(rules).transform_to_string(xdm_node=node)
            findings.extend(_failures(rules, svrl))
        return findings

    def _compile(self, rules: str) -> Any:
        """The SVRL stylesheet of a schematron, compiled once (three engine passes)."""
        if rules in self._compiled:
            return self._compiled[rules]
        source = self._schematrons / rules
        if not source.is_file():
            raise RulesError(f"the rules folder has no schematrons/{rules}")
        step = source
        for number, engine in enumerate(_ENGINE, start=1):
            xslt = self._processor.new_xslt30_processor().compile_stylesheet(
                stylesheet_file=str(self._schematrons / "moteur" / engine)
            )
            parsed = self._processor.parse_xml(xml_file_name=str(step))
            # beside the source: the includes and value sets are found relative to it
            step = source.with_name(f"{source.stem}.relais-step{number}.xsl")
            step.write_text(xslt.transform_to_string(xdm_node=parsed), encoding="utf-8")
        compiled = self._processor.new_xslt30_processor().compile_stylesheet(
            stylesheet_file=str(step)
        )
        self._compiled[rules] = compiled
        return compiled


def _rule_sets(root: etree._Element) -> list[str]:
    if root.find(f"{{{HL7V3}}}component/{{{HL7V3}}}nonXMLBody") is not None:
        return list(PROFILES)
    code = root.find(f"{{{HL7V3}}}code")
    model = MODELS.get(code.get("code", "") if code is not None else "")
    return [model, *PROFILES] if model else list(PROFILES)


def _failures(rules: str, svrl: str) -> Iterator[Finding]:
    """Every failed ``assert`` and every fired ``report``: the ANS's rules state errors both
    ways (a report such as E_medications_fr's "Erreur de conformité CI-SIS ..." fires on
    what is forbidden). A report or assert the schematron marks as a warning or a piece
    of information (``role`` or ``flag``: warning, info...) is not a failure; the ANS's
    rules mark none."""
    report = etree.fromstring(svrl.encode("utf-8"), safe_parser())
    tags = (f"{{{_SVRL}}}failed-assert", f"{{{_SVRL}}}successful-report")
    for failed in report.iter(*tags):
        if _advisory(failed):
            continue
        text = " ".join("".join(str(part) for part in failed.itertext()).split())
        yield Finding(Path(rules).stem, _short(failed.get("location", "")), text)


def _advisory(outcome: etree._Element) -> bool:
    marks = {(outcome.get(name) or "").strip().lower() for name in ("role", "flag")}
    return bool(marks & _ADVISORY)


def _short(location: str) -> str:
    """``/*:ClinicalDocument[namespace-uri()='urn:hl7-org:v3'][1]/...`` as
    ``/ClinicalDocument[1]/...``."""
    return re.sub(r"\*:(\w+)\[namespace-uri\(\)='[^']*'\]", r"\1", location)
