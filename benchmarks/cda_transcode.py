"""CR-BIO N3 transcoding and validation throughput, against XSD validation alone.

Run: ``.venv/bin/python -m benchmarks.cda_transcode [--documents N] [--results 20,200]
[--xsd-dir PATH]``. For each number of results per document, N distinct CR-BIO
documents (own id, own test-INS patient, own values, own ~100 KB PDF copy) go
through five timed phases, one after the other, in this process:

full
    The whole transcode + validate path of one document: every
    :class:`~domain.lab_results.LabResult` mapped to LOINC with the laboratory's
    catalogue (:func:`~streams.transcode.lab_catalogue.map_result`), the CR-BIO N3 built
    (:func:`~streams.transcode.cda_build.build_cr_bio_n3`, PDF copy included), then
    :func:`~domain.cda_validate.check_document`: the CDA R2 schema and the CI-SIS
    header rules. A document that fails aborts the run.
xsd (the baseline)
    :meth:`~domain.cda_validate.CdaSchema.validate` alone (parse + schema), on the
    bytes the build phase produced: what validation costs without transcoding.
header, map, build
    :func:`~domain.cda_validate.header_problems` alone, the mapping of every result
    alone, and the build alone (from the mapped results): the parts of ``full``,
    so that the dominant cost can be named.

See benchmarks/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

from lxml import etree

from benchmarks.latency import Latency, summarise
from domain.cda_model import DocumentHeader, PatientHeader
from domain.cda_validate import (
    ENTRY_XSD,
    CdaInvalid,
    CdaSchema,
    check_document,
    header_problems,
)
from domain.ins import ins_key
from domain.lab_results import CodedResult, LabResult, MappingStatus, ValueType
from ops.demo.samples import BIOLOGIST, INS_TEST_OID, LABORATORY, minimal_pdf
from streams.transcode.cda_build import build_cr_bio_n3
from streams.transcode.lab_catalogue import Catalogue, load_catalogue, map_result
from streams.transcode.lab_codes import LoincTable, UcumUnits

REPO: Final = Path(__file__).resolve().parents[1]
SHARED_DATA: Final = REPO.parent / "shared" / "data"
DEFAULT_XSD_DIR: Final = SHARED_DATA / "cda-xsd"
LOINC_CSV: Final = SHARED_DATA / "loinc" / "loinc_fr_labels_from_ans_crbio_examples.csv"
UCUM_XML: Final = SHARED_DATA / "jdv" / "UCUM_2.16.840.1.113883.6.8.xml"

DOC_ROOT: Final = "1.2.250.1.213.1.1.9.4243"
IPP_ROOT: Final = "1.2.250.1.213.1.1.9.4243.1"
FACILITY: Final = "LAB-BENCH"
CATALOGUE_VERSION: Final = "2026.1"
PDF_BYTES: Final = 100_000
DEFAULT_DOCUMENTS: Final = 500
DEFAULT_RESULTS: Final = "20,200"
WARMUP: Final = 3
SERVICE_START: Final = datetime(2026, 11, 22, 7, 30)
PDF_LINE: Final = (
    "Hemoglobine 14,2 g/dL (13,0-17,0). Leucocytes 6,1 G/L (4,0-10,0). "
    "Plaquettes 250 G/L (150-400). Creatinine 78 umol/L, DFG 96 mL/min/1,73m2. "
)
PHASES: Final = ("full", "xsd", "header", "map", "build")
PARTS: Final = ("map", "build", "header", "xsd")  # what ``full`` does, in order


T = TypeVar("T")
R = TypeVar("R")


class BenchmarkError(RuntimeError):
    """The run is not a valid measurement (an invalid document, a mapping that went wrong)."""


# ---------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Exam:
    """One row of the laboratory's catalogue and how the laboratory sends its results."""

    local_code: str
    label: str
    specimen: str
    unit: str | None  # the catalogue's unit (UCUM)
    loinc: str | None  # None: not mapped yet, goes out with the LOINC waiting code system
    value_type: ValueType
    low: float = 0.0
    high: float = 0.0
    decimals: int = 1
    upper_bound_only: bool = False  # reference range written "<high"
    sent_unit: str | None = None  # how the laboratory writes the unit in OBX-6, if not as above
    choices: tuple[str, ...] = ()  # CE / ST values

    @property
    def reference(self) -> str:
        if self.upper_bound_only:
            return f"<{self.high:g}"
        return f"{self.low:.{self.decimals}f}-{self.high:.{self.decimals}f}"


def _nm(
    code: str,
    label: str,
    unit: str | None,
    loinc: str,
    low: float,
    high: float,
    decimals: int = 1,
    *,
    specimen: str = "Sang",
    sent_unit: str | None = None,
    upper_bound_only: bool = False,
) -> Exam:
    return Exam(
        code,
        label,
        specimen,
        unit,
        loinc,
        ValueType.NUMERIC,
        low,
        high,
        decimals,
        upper_bound_only,
        sent_unit,
    )


#: Numeric exams: hemogram, serum protein electrophoresis, chemistry, thyroid, urine cytology.
#: Every LOINC code is in the LOINC-FR table of ../shared/data/loinc, every unit in the UCUM list.
NUMERIC: Final = (
    _nm("HB", "Hémoglobine", "g/dL", "718-7", 12.0, 16.0),
    _nm("GR", "Hématies", "10*12/L", "789-8", 4.0, 5.4, 2),
    _nm("HT", "Hématocrite", "%", "20570-8", 37.0, 47.0),
    _nm("VGM", "VGM", "fL", "30428-7", 80.0, 100.0, 0),
    _nm("TCMH", "TCMH", "pg", "28539-5", 27.0, 32.0),
    _nm("CCMH", "CCMH", "g/dL", "28540-3", 32.0, 36.0),
    _nm("IDR", "Indice de distribution des hématies", "%", "30385-9", 11.5, 14.5),
    _nm("GB", "Leucocytes", "10*9/L", "6690-2", 4.0, 10.0, 2),
    _nm("PNN", "Polynucléaires neutrophiles", "%", "26511-6", 40.0, 75.0),
    _nm("LYM", "Lymphocytes", "%", "26478-8", 20.0, 45.0),
    _nm("MONO", "Monocytes", "%", "26485-3", 2.0, 10.0),
    _nm("PNE", "Polynucléaires éosinophiles", "%", "26450-7", 0.0, 5.0),
    _nm("PNB", "Polynucléaires basophiles", "%", "30180-4", 0.0, 1.0),
    _nm("PLQ", "Plaquettes", "10*9/L", "777-3", 150.0, 400.0, 0),
    _nm("VMP", "Volume moyen plaquettaire", "fL", "32623-1", 7.4, 10.4),
    _nm("IDP", "Indice de distribution plaquettaire", "%", "32207-3", 10.0, 18.0),
    _nm("PROT", "Protéines totales", "g/L", "2885-2", 64.0, 83.0, 0, specimen="Sérum"),
    _nm("ALB", "Albumine", "g/L", "2862-1", 35.0, 50.0, specimen="Sérum"),
    _nm("A1G", "Alpha-1 globulines", "g/L", "2865-4", 1.0, 3.0, specimen="Sérum"),
    _nm("A2G", "Alpha-2 globulines", "g/L", "2868-8", 6.0, 10.0, specimen="Sérum"),
    _nm("BG", "Bêta globulines", "g/L", "2871-2", 7.0, 12.0, specimen="Sérum"),
    _nm("GG", "Gamma globulines", "g/L", "2874-6", 7.0, 16.0, specimen="Sérum"),
    _nm("ALBP", "Albumine %", "%", "13980-8", 55.0, 66.0, specimen="Sérum"),
    _nm("A1GP", "Alpha-1 globulines %", "%", "13978-2", 1.4, 2.9, specimen="Sérum"),
    _nm("A2GP", "Alpha-2 globulines %", "%", "13981-6", 7.0, 11.0, specimen="Sérum"),
    _nm("BGP", "Bêta globulines %", "%", "13982-4", 8.0, 13.0, specimen="Sérum"),
    _nm("GGP", "Gamma globulines %", "%", "13983-2", 11.0, 19.0, specimen="Sérum"),
    _nm("UREE", "Urée", "mmol/L", "22664-7", 2.5, 7.5, 2, specimen="Sérum", sent_unit="mmol/l"),
    _nm("GLY", "Glycémie à jeun", "mmol/L", "40193-5", 3.9, 5.8, 2, sent_unit="mmol/l"),
    _nm("GLYG", "Glycémie à jeun (g/L)", "g/L", "53049-3", 0.70, 1.05, 2, specimen="Plasma"),
    _nm("TSH", "TSH", "m[IU]/L", "3016-3", 0.4, 4.0, 2, specimen="Sérum"),
    _nm("T4L", "T4 libre", "pg/mL", "3024-7", 9.0, 19.0, specimen="Sérum"),
    _nm("INR", "INR", None, "6301-6", 0.8, 1.2, 2, specimen="Plasma citraté"),
    _nm("ULEU", "Leucocytes urinaires", "/uL", "30405-5", 0, 10, 0, specimen="Urine",
        upper_bound_only=True),
    _nm("UHEM", "Hématies urinaires", "/uL", "798-9", 0, 10, 0, specimen="Urine",
        upper_bound_only=True),
    _nm("UBAC", "Bactéries urinaires", "/uL", "51480-2", 0, 1000, 0, specimen="Urine",
        upper_bound_only=True),
)  # fmt: skip
#: Coded (CE: SNOMED CT, or a local code the CDA carries as nullFlavor OTH) and text (ST) exams.
OTHER: Final = (
    Exam("UCOUL", "Couleur des urines", "Urine", None, "5778-6", ValueType.CODED,
         choices=("371244009^Jaune^SCT", "^Jaune pâle^L", "^Ambrée^L")),
    Exam("GRAM", "Examen direct (Gram)", "Urine", None, "653-6", ValueType.TEXT,
         choices=("Absence de germes à l'examen direct.", "Rares bacilles à Gram négatif.")),
    Exam("UCEL", "Cellules épithéliales", "Urine", None, "20453-7", ValueType.CODED,
         choices=("260385009^Négatif^SCT", "10828004^Positif^SCT")),
    Exam("UASP", "Aspect des urines", "Urine", None, "5767-9", ValueType.CODED,
         choices=("^Limpide^L", "^Trouble^L")),
)  # fmt: skip
#: Not mapped in the catalogue: always goes out with the LOINC waiting code system.
COMMENT: Final = Exam(
    "COMBIO",
    "Commentaire du biologiste",
    "",
    None,
    None,
    ValueType.TEXT,
    choices=("Résultats contrôlés et validés par le biologiste.",),
)
EXAMS: Final = (*NUMERIC, *OTHER, COMMENT)


def catalogue_csv() -> str:
    """The laboratory's catalogue, as the CSV it maintains (``;``-separated)."""
    lines = ["local_code;label;specimen;unit;loinc_code"]
    lines += [
        f"{e.local_code};{e.label};{e.specimen};{e.unit or ''};{e.loinc or ''}" for e in EXAMS
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Reference:
    """What mapping needs: the catalogue, the LOINC-FR table and the UCUM list."""

    catalogue: Catalogue
    loinc: LoincTable
    ucum: UcumUnits

    def map(self, results: Sequence[LabResult]) -> list[CodedResult]:
        return [map_result(r, self.catalogue, self.loinc, self.ucum) for r in results]


def load_reference() -> Reference:
    for path in (LOINC_CSV, UCUM_XML):
        if not path.is_file():
            raise BenchmarkError(f"{path}: missing (the benchmark reads ../shared/data)")
    catalogue = load_catalogue(catalogue_csv(), facility=FACILITY, version=CATALOGUE_VERSION)
    loinc = LoincTable.from_csv(LOINC_CSV.read_text("utf-8"), source=str(LOINC_CSV))
    ucum = UcumUnits.from_xml(UCUM_XML.read_bytes(), source=str(UCUM_XML))
    return Reference(catalogue, loinc, ucum)


# ---------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Sample:
    """One CR-BIO to transcode: its header, its patient, the lab's results and its PDF."""

    header: DocumentHeader
    patient: PatientHeader
    results: tuple[LabResult, ...]
    pdf: bytes


def hl7_ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S") + "+0100"


def numeric_result(exam: Exam, rng: random.Random, observed_at: str) -> LabResult:
    """A value around the reference range, about one in six outside it (flag H / L)."""
    middle, half = (exam.low + exam.high) / 2, (exam.high - exam.low) / 2
    value = max(0.0, rng.gauss(middle, half * 0.7))
    text = f"{value:.{exam.decimals}f}"
    flag = "H" if float(text) > exam.high else "L" if float(text) < exam.low else "N"
    unit = exam.sent_unit or exam.unit
    return LabResult(
        exam.local_code,
        exam.label,
        text,
        ValueType.NUMERIC,
        unit,
        exam.reference,
        flag,
        observed_at,
        exam.specimen,
    )


def other_result(exam: Exam, rng: random.Random, observed_at: str) -> LabResult:
    value = rng.choice(exam.choices)
    flag = "A" if "Positif" in value else None
    return LabResult(
        exam.local_code,
        exam.label,
        value,
        exam.value_type,
        None,
        None,
        flag,
        observed_at,
        exam.specimen,
    )


def lab_results(count: int, rng: random.Random) -> tuple[LabResult, ...]:
    """``count`` results: about 1 in 10 coded or text (the last one unmapped), the rest numeric.

    Past one full panel the numeric exams repeat as later series (serial sampling, 30
    minutes apart), so a 200-result report is a day-hospital follow-up, not 200 exams.
    """
    others = max(2, count // 10)
    results: list[LabResult] = []
    for i in range(count - others):
        series, exam = divmod(i, len(NUMERIC))
        moment = SERVICE_START + timedelta(minutes=30 * series)
        results.append(numeric_result(NUMERIC[exam], rng, hl7_ts(moment)))
    for i in range(others - 1):
        results.append(other_result(OTHER[i % len(OTHER)], rng, hl7_ts(SERVICE_START)))
    results.append(other_result(COMMENT, rng, hl7_ts(SERVICE_START)))
    return tuple(results)


def pdf_text(n: int) -> str:
    """The report's printable text, sized so that the PDF is about PDF_BYTES."""
    head = f"Compte rendu de biologie, document {n}. "
    length = PDF_BYTES - len(minimal_pdf("")) - len(head)
    return head + (PDF_LINE * (length // len(PDF_LINE) + 1))[:length]


def bench_patient(n: int) -> PatientHeader:
    """A distinct test-INS patient (valid key) per document, with a laboratory IPP."""
    body = f"27903{n % 10**8:08d}"
    return PatientHeader(
        ins=f"{body}{ins_key(int(body)):02d}",
        ins_oid=INS_TEST_OID,
        birth_name="PAT-TROIS",
        given_names="DOMINIQUE",
        birth_date="19790328",
        sex="F",
        birthplace_code="51215",
        local_ids=((IPP_ROOT, f"IPP{n:08d}"),),
    )


def bench_header(tag: int, n: int, results: Sequence[LabResult]) -> DocumentHeader:
    """The header ops.demo.samples.cda builds, with this document's own id and times."""
    extension = f"{tag}{n:08d}"
    last = max(r.observed_at or "" for r in results) or hl7_ts(SERVICE_START)
    return DocumentHeader(
        id_root=DOC_ROOT,
        id_extension=extension,
        set_id_root=DOC_ROOT,
        set_id_extension=extension + "0",
        version=1,
        type_code="11502-2",
        type_display="CR d'examens biologiques",
        title="CR d'examens biologiques",
        effective_time="20261122181500+0100",
        author=BIOLOGIST,
        author_org=LABORATORY,
        custodian=LABORATORY,
        legal_authenticator=BIOLOGIST,
        authored_at="20261122181500+0100",
        service_start=hl7_ts(SERVICE_START),
        service_stop=last,
    )


def build_samples(results: int, count: int, tag: int) -> list[Sample]:
    samples = []
    for n in range(count):
        rng = random.Random(tag * 1_000_003 + n)  # the same documents on every run
        lab = lab_results(results, rng)
        samples.append(
            Sample(bench_header(tag, n, lab), bench_patient(n), lab, minimal_pdf(pdf_text(n)))
        )
    return samples


# ---------------------------------------------------------------------------- the paths


def transcode(sample: Sample, reference: Reference, schema: CdaSchema) -> bytes:
    """The full path: map every result, build the CR-BIO N3, check schema + header rules."""
    coded = reference.map(sample.results)
    document = build_cr_bio_n3(sample.header, sample.patient, coded, sample.pdf)
    check_document(schema, document)  # raises CdaInvalid with every message
    return document


def check_mapping(sample: Sample, coded: Sequence[CodedResult]) -> None:
    """Every result is MAPPED except the biologist's comment, which is WAITING."""
    for result, mapped in zip(sample.results, coded, strict=True):
        expected = MappingStatus.WAITING if result.local_code == COMMENT.local_code else None
        wanted = expected or MappingStatus.MAPPED
        if mapped.status is not wanted:
            raise BenchmarkError(
                f"{result.local_code}: mapped {mapped.status} {mapped.problems}, not {wanted}"
            )


# ---------------------------------------------------------------------------- measuring


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Phase:
    name: str
    documents: int
    seconds: float  # wall, first document started -> last one done
    cpu_s: float  # this process, getrusage user + system over the phase
    latency: Latency

    @property
    def rate(self) -> float:
        return self.documents / self.seconds


def timed(name: str, items: Sequence[T], step: Callable[[T], R]) -> tuple[Phase, list[R]]:
    """Run ``step`` on every item, one after the other; time each and the whole."""
    gc.collect()
    outputs: list[R] = []
    latencies: list[float] = []
    cpu, started = self_cpu_s(), time.perf_counter()
    for item in items:
        begun = time.perf_counter()
        outputs.append(step(item))
        latencies.append(time.perf_counter() - begun)
    seconds = time.perf_counter() - started
    phase = Phase(name, len(items), seconds, self_cpu_s() - cpu, summarise(latencies))
    return phase, outputs


@dataclass(frozen=True)
class Measurement:
    results: int
    documents: int
    mean_bytes: int
    pdf_bytes: int
    statuses: dict[str, int]  # mapping statuses over all results
    phases: dict[str, Phase]

    @property
    def dominant(self) -> tuple[str, float]:
        """The part of the full path that takes the most time, and its share of it."""
        name = max(PARTS, key=lambda p: self.phases[p].seconds)
        return name, self.phases[name].seconds / self.phases["full"].seconds


def measure(
    results: int, documents: int, tag: int, reference: Reference, schema: CdaSchema
) -> Measurement:
    samples = build_samples(results, WARMUP + documents, tag)
    warmup, timed_samples = samples[:WARMUP], samples[WARMUP:]
    for sample in warmup:  # not timed: first calls, lazily compiled XPaths, allocator growth
        coded = reference.map(sample.results)
        check_mapping(sample, coded)
        document = build_cr_bio_n3(sample.header, sample.patient, coded, sample.pdf)
        problems = schema.validate(document) + header_problems(document)
        if problems:
            raise BenchmarkError(f"the built CR-BIO is not valid: {problems[:5]}")
        transcode(sample, reference, schema)

    phases: dict[str, Phase] = {}
    phases["map"], mapped = timed("map", timed_samples, lambda s: reference.map(s.results))
    pairs = list(zip(timed_samples, mapped, strict=True))
    phases["build"], built = timed(
        "build", pairs, lambda p: build_cr_bio_n3(p[0].header, p[0].patient, p[1], p[0].pdf)
    )
    phases["header"], header_found = timed("header", built, header_problems)
    phases["xsd"], xsd_found = timed("xsd", built, schema.validate)
    try:
        phases["full"], full = timed(
            "full", timed_samples, lambda s: transcode(s, reference, schema)
        )
    except CdaInvalid as exc:
        raise BenchmarkError(f"a transcoded CR-BIO is not valid: {exc.messages[:5]}") from exc
    if any(header_found) or any(xsd_found):
        raise BenchmarkError("a built CR-BIO breaks the header rules or the schema")
    if full != built:
        raise BenchmarkError("the full path and the build phase made different documents")
    for sample, coded in zip(timed_samples, mapped, strict=True):
        check_mapping(sample, coded)
    statuses = Counter(str(c.status) for coded in mapped for c in coded)
    return Measurement(
        results,
        documents,
        round(sum(map(len, built)) / len(built)),
        round(sum(len(s.pdf) for s in timed_samples) / len(timed_samples)),
        dict(statuses),
        phases,
    )


# ---------------------------------------------------------------------------- report


def machine_info(schema_seconds: float) -> list[str]:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
        )
    libxml2 = ".".join(str(part) for part in etree.LIBXML_VERSION)
    hdrh = importlib.util.find_spec("hdrh") is not None
    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {os.cpu_count()} CPUs ({model}), {platform.platform()}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"libraries: lxml {importlib.metadata.version('lxml')} (libxml2 {libxml2})",
        f"schema: {ENTRY_XSD} compiled once in {schema_seconds:.2f} s (not timed)",
        "percentiles: nearest rank over the sorted per-document times"
        + ("" if hdrh else " (hdrh is not installed)"),
    ]


def summary_table(measurements: Sequence[Measurement]) -> list[str]:
    lines = [
        "| results/doc | docs | doc KB | of which PDF KB (base64) | full docs/s | XSD-only docs/s "
        "| XSD share of full | full p50 ms | full p99 ms | XSD p50 ms | XSD p99 ms "
        "| CPU s full | CPU s XSD | dominant cost |",
        "|" + "---|" * 14,
    ]
    for m in measurements:
        full, xsd = m.phases["full"], m.phases["xsd"]
        name, share = m.dominant
        lines.append(
            f"| {m.results} | {m.documents} | {m.mean_bytes / 1000:,.1f} "
            f"| {math.ceil(m.pdf_bytes / 3) * 4 / 1000:,.1f} | {full.rate:,.0f} | {xsd.rate:,.0f} "
            f"| {xsd.seconds / full.seconds:.0%} | {full.latency.p50_ms:.2f} "
            f"| {full.latency.p99_ms:.2f} | {xsd.latency.p50_ms:.2f} | {xsd.latency.p99_ms:.2f} "
            f"| {full.cpu_s:.2f} | {xsd.cpu_s:.2f} | {name} ({share:.0%}) |"
        )
    return lines


def detail_table(measurements: Sequence[Measurement]) -> list[str]:
    lines = [
        "| results/doc | phase | docs | wall s | docs/s | results/s | MB/s (CDA) | p50 ms | p90 ms "
        "| p99 ms | max ms | mean ms | share of full | CPU s | CPU ms/doc |",
        "|" + "---|" * 15,
    ]
    for m in measurements:
        full = m.phases["full"]
        for name in PHASES:
            p = m.phases[name]
            lines.append(
                f"| {m.results} | {name} | {p.documents} | {p.seconds:.2f} | {p.rate:,.0f} "
                f"| {p.rate * m.results:,.0f} | {p.rate * m.mean_bytes / 1e6:.1f} "
                f"| {p.latency.p50_ms:.2f} | {p.latency.p90_ms:.2f} | {p.latency.p99_ms:.2f} "
                f"| {p.latency.max_ms:.2f} | {p.latency.mean_ms:.2f} "
                f"| {p.seconds / full.seconds:.0%} | {p.cpu_s:.2f} "
                f"| {p.cpu_s / p.documents * 1000:.2f} |"
            )
    return lines


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(results: Sequence[int], documents: int, xsd_dir: Path) -> None:
    started = time.perf_counter()
    reference = load_reference()
    schema_started = time.perf_counter()
    schema = CdaSchema.load(xsd_dir)
    for line in machine_info(time.perf_counter() - schema_started):
        print(line, flush=True)
    measurements = []
    for tag, count in enumerate(results, start=1):
        progress(f"{count} results per CR-BIO: {documents} documents (+{WARMUP} warm-up)")
        m = measure(count, documents, tag % 10, reference, schema)
        full, xsd = m.phases["full"], m.phases["xsd"]
        progress(f"  full {full.rate:,.0f} docs/s, XSD alone {xsd.rate:,.0f} docs/s")
        measurements.append(m)
    print()
    print("\n".join(summary_table(measurements)))
    print()
    print("\n".join(detail_table(measurements)))
    print()
    for m in measurements:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(m.statuses.items()))
        print(f"({m.results} results/doc: mapping statuses over all documents: {statuses})")
    print(
        f"(+{WARMUP} warm-up documents per size, not timed; whole run "
        f"{time.perf_counter() - started:.0f} s)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cda_transcode",
        description="CR-BIO N3 transcode + validate throughput vs XSD validation alone.",
    )
    parser.add_argument(
        "--documents",
        type=int,
        default=DEFAULT_DOCUMENTS,
        help=f"documents per results count (default {DEFAULT_DOCUMENTS})",
    )
    parser.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help=f"results per CR-BIO, comma-separated (default {DEFAULT_RESULTS})",
    )
    parser.add_argument(
        "--xsd-dir",
        type=Path,
        default=DEFAULT_XSD_DIR,
        help=f"folder holding {ENTRY_XSD} (default ../shared/data/cda-xsd beside the checkout)",
    )
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in str(args.results).split(",") if c.strip()]
    except ValueError:
        parser.error(f"--results: comma-separated whole numbers, not {args.results!r}")
    if not counts or min(counts) < 3 or args.documents < 1:
        parser.error("--results: each at least 3; --documents at least 1")
    xsd_dir = Path(args.xsd_dir)
    if not (xsd_dir / ENTRY_XSD).is_file():
        parser.error(
            f"{xsd_dir / ENTRY_XSD} not found: give --xsd-dir the folder holding the CDA R2 "
            "schema (../shared/data/cda-xsd from ansforge/TestContenuCDA-3-0)"
        )
    try:
        run(counts, int(args.documents), xsd_dir)
    except BenchmarkError as exc:
        sys.exit(f"benchmark aborted: {exc}")


if __name__ == "__main__":
    main()
