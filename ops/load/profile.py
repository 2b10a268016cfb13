"""The vague-1 replay profile and the plan of one replay (pure, deterministic).

Volumes and mix come from ../shared/CONTEXT.md: a month of Mon espace santé
feeding is about 10 M documents (3.9 documents/s on average) with daytime
peaks several times higher; by sender, hospitals 43 %, city biology 33 % plus
covid test certificates 19 % (lab results: counted as biology here), city
radiology 3 %, city doctors 2 % (an option: later waves).

A :class:`Profile` says *what* to replay (span, volume, mix, shares of bad
cases); :func:`plan` turns it into the list of :class:`PlannedDocument`
(which document, for which synthetic patient, at which replay second, through
which entry point). Nothing here touches the network or the clock: the same
profile and seed always give the same plan.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final

from domain.ins import with_key

MONTH_DOCUMENTS: Final = 10_000_000
MONTH_DAYS: Final = 30
WEEKDAYS_PER_MONTH: Final = 22
#: a Saturday or Sunday carries this share of a weekday's volume (labs open on Saturday mornings)
WEEKEND_FACTOR: Final = 0.3

#: documents per hour of a weekday, relative (local time 0 h .. 23 h): morning lab and
#: imaging results peak at 9-11 h, discharge letters in the afternoon, little at night.
WEEKDAY_CURVE: Final = (
    0.4, 0.3, 0.3, 0.3, 0.3, 0.5, 1.2, 3.5, 8.0, 12.0, 12.5, 10.0,
    6.5, 6.0, 7.5, 8.0, 7.0, 5.5, 4.0, 3.0, 2.2, 1.6, 1.0, 0.6,
)  # fmt: skip


class Channel(Enum):
    """The real entry point a document goes through."""

    MLLP = "mllp"  # HL7 v2 over MLLP to `relais mllp` (hospital DPI/PFI, lab SGL)
    LIBRARY = "library"  # producers.publisher.Publisher (RIS, city software)


class Defect(Enum):
    """What is wrong with a document on purpose, and so where it should end."""

    NONE = "none"  # qualified identity, good document: filed at the DMP once
    UNQUALIFIED = "unqualified"  # identity only provisional: held by the identity stage
    DUPLICATE = "duplicate"  # a second copy of an earlier document (new MSH-10): ignored
    BROKEN_CDA = "broken-cda"  # truncated CDA in a good message: refused at the door (AE)
    BAD_HL7 = "bad-hl7"  # not HL7 at all (MLLP only): refused with AE and dead-lettered


@dataclass(frozen=True)
class Kind:
    """A document kind a sector sends, with its size ranges."""

    name: str  # CR-BIO, CR-IMG, LETTER, CONSULTATION
    type_code: str  # LOINC document type
    channel: Channel
    pdf_kb: tuple[int, int]  # the PDF it carries (log-uniform between the bounds)
    results: tuple[int, int] = (0, 0)  # lab results in a CR-BIO (log-uniform)


@dataclass(frozen=True)
class Sector:
    name: str  # HOSPITAL, LAB, RADIOLOGY, CITY (the Sector enum of the records)
    share: float  # of the month's documents
    kind: Kind


CR_BIO: Final = Kind("CR-BIO", "11502-2", Channel.MLLP, (10, 60), (5, 200))
CR_IMG: Final = Kind("CR-IMG", "18748-4", Channel.LIBRARY, (50, 300))
LETTER: Final = Kind("LETTER", "11490-0", Channel.MLLP, (50, 1000))
CONSULTATION: Final = Kind("CONSULTATION", "11488-4", Channel.LIBRARY, (20, 200))

VAGUE1_SECTORS: Final = (
    Sector("HOSPITAL", 0.43, LETTER),
    Sector("LAB", 0.52, CR_BIO),  # city biology 33 % + covid test certificates 19 %
    Sector("RADIOLOGY", 0.03, CR_IMG),
)
CITY: Final = Sector("CITY", 0.02, CONSULTATION)


class ProfileError(ValueError):
    """A profile that cannot be replayed; the message says which value to change."""


@dataclass(frozen=True)
class Shares:
    """Shares of documents with a defect on purpose (each in [0, 1), together < 1)."""

    unqualified: float = 0.02
    duplicates: float = 0.01
    bad_inputs: float = 0.01

    def check(self) -> None:
        values = (self.unqualified, self.duplicates, self.bad_inputs)
        if any(not 0.0 <= v < 1.0 for v in values) or sum(values) >= 1.0:
            raise ProfileError(f"shares must be in [0, 1) and add up to less than 1: {values}")


@dataclass(frozen=True)
class Profile:
    """What to replay. ``span`` "day" is the peak (week)day, "month" the whole month.

    Either ``compress`` (profile seconds per wall second: a day in 4 minutes is 360) or
    ``rate`` (documents per wall second, flat, no daily curve) sets the pace; ``documents``
    caps how many are sent (a sample of the span's volume, spread over the same curve).
    """

    span: str = "day"
    documents: int | None = None
    compress: float | None = None
    rate: float | None = None
    city_doctors: bool = False
    shares: Shares = field(default_factory=Shares)
    monthly_documents: int = MONTH_DOCUMENTS
    seed: int = 1
    patients: int = 5000
    #: the sectors to replay instead of vague 1's (e.g. equal shares, so that a short replay
    #: sends every kind of document)
    mix: tuple[Sector, ...] = ()

    def check(self) -> None:
        if self.span not in {"day", "month"}:
            raise ProfileError(f"span is day or month, not {self.span!r}")
        if (self.compress is None) == (self.rate is None):
            raise ProfileError("give exactly one of compress (a day in N s) or rate (docs/s)")
        if self.compress is not None and self.compress <= 0:
            raise ProfileError("compress must be positive")
        if self.rate is not None and self.rate <= 0:
            raise ProfileError("rate must be positive")
        if self.rate is not None and self.documents is None:
            raise ProfileError("a fixed rate needs a document count")
        if self.documents is not None and self.documents < 1:
            raise ProfileError("documents must be at least 1")
        if self.patients < 10:
            raise ProfileError("at least 10 synthetic patients")
        self.shares.check()

    @property
    def sectors(self) -> tuple[Sector, ...]:
        if self.mix:
            return self.mix
        return (*VAGUE1_SECTORS, CITY) if self.city_doctors else VAGUE1_SECTORS

    def span_volume(self) -> int:
        """Documents in the span at full national volume."""
        return self.monthly_documents if self.span == "month" else peak_day_volume(self)

    def document_count(self) -> int:
        return self.documents if self.documents is not None else self.span_volume()

    def span_seconds(self) -> float:
        return 86_400.0 * (MONTH_DAYS if self.span == "month" else 1)

    def wall_seconds(self) -> float:
        """How long the replay sends for (wall clock)."""
        if self.rate is not None:
            return self.document_count() / self.rate
        assert self.compress is not None
        return self.span_seconds() / self.compress


def peak_day_volume(profile: Profile) -> int:
    """Documents on one weekday of the month (the busiest kind of day)."""
    weekend_days = MONTH_DAYS - WEEKDAYS_PER_MONTH
    return round(profile.monthly_documents / (WEEKDAYS_PER_MONTH + WEEKEND_FACTOR * weekend_days))


def hourly_weights(span: str) -> list[float]:
    """Relative volume of each hour of the span (24 for a day, 720 for a month)."""
    if span == "day":
        return list(WEEKDAY_CURVE)
    weights: list[float] = []
    for day in range(MONTH_DAYS):
        factor = WEEKEND_FACTOR if day % 7 in (5, 6) else 1.0
        weights += [w * factor for w in WEEKDAY_CURVE]
    return weights


def peak_to_mean(span: str = "day") -> float:
    weights = hourly_weights(span)
    return max(weights) / (sum(weights) / len(weights))


class ArrivalCurve:
    """Inverse CDF of the piecewise-constant hourly curve: quantile -> profile second."""

    def __init__(self, weights: list[float]) -> None:
        if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ProfileError("the curve needs non-negative weights with a positive sum")
        total = sum(weights)
        self.weights = weights
        self.cumulative = [0.0]
        for w in weights:
            self.cumulative.append(self.cumulative[-1] + w / total)
        self.cumulative[-1] = 1.0

    def at(self, q: float) -> float:
        """The profile second (0 .. 3600 x hours) below which a share ``q`` of documents falls."""
        q = min(max(q, 0.0), 1.0)
        hour = min(bisect.bisect_right(self.cumulative, q) - 1, len(self.weights) - 1)
        while self.weights[hour] == 0 and hour + 1 < len(self.weights):
            hour += 1
        low, high = self.cumulative[hour], self.cumulative[hour + 1]
        inside = 0.0 if high <= low else (q - low) / (high - low)
        return 3600.0 * (hour + min(max(inside, 0.0), 1.0))


# ---------------------------------------------------------------------------- patients


@dataclass(frozen=True)
class SyntheticPatient:
    """A fictitious patient on the INS test OID whose NIR agrees with the five traits."""

    ins: str
    family: str
    given: str
    birth_date: str  # YYYYMMDD
    sex: str  # M / F
    birthplace: str  # INSEE commune code (5 characters)


FAMILY_NAMES: Final = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS",
    "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID",
    "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE",
)  # fmt: skip
GIVEN_F: Final = ("MARIE", "NATHALIE", "ISABELLE", "SYLVIE", "CATHERINE", "ANNE", "CHLOE", "LEA")
GIVEN_M: Final = ("JEAN", "PHILIPPE", "MICHEL", "ALAIN", "PATRICK", "NICOLAS", "LUCAS", "HUGO")
#: INSEE commune codes of birth (département + commune), all metropolitan, no arrondissements
BIRTHPLACES: Final = ("51215", "01154", "33063", "31555", "59350", "67482", "44109", "35238")


def synthetic_patient(n: int) -> SyntheticPatient:
    """Patient number ``n`` (0 .. 8,639,999): always the same traits for the same ``n``, and
    never the INS of another ``n`` (order, place, month and year together encode ``n``)."""
    order, k = n % 1000, n // 1000
    place = BIRTHPLACES[k % len(BIRTHPLACES)]
    month = 1 + (k // len(BIRTHPLACES)) % 12
    year = 1930 + (order * 7 + k // (12 * len(BIRTHPLACES))) % 90
    sex = "F" if n % 2 else "M"
    body = f"{'2' if sex == 'F' else '1'}{year % 100:02d}{month:02d}{place}{order:03d}"
    given = GIVEN_F if sex == "F" else GIVEN_M
    return SyntheticPatient(
        ins=with_key(body),
        family=f"{FAMILY_NAMES[n % len(FAMILY_NAMES)]}-{_letters(n)}",
        given=given[(n // 3) % len(given)],
        birth_date=f"{year:04d}{month:02d}{1 + n % 28:02d}",
        sex=sex,
        birthplace=place,
    )


def _letters(n: int) -> str:
    """n written with the letters A-Z (a name carries no digits)."""
    out = ""
    while True:
        n, r = divmod(n, 26)
        out = chr(ord("A") + r) + out
        if n == 0:
            return out


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedDocument:
    seq: int  # 0, 1, 2... in send order
    at_s: float  # wall seconds after the replay starts
    sector: str
    kind: Kind
    patient: int  # synthetic patient number
    defect: Defect
    pdf_bytes: int
    results: int  # lab results (CR-BIO), else 0
    copy_of: int | None = None  # DUPLICATE: the seq of the original

    @property
    def channel(self) -> Channel:
        return self.kind.channel

    @property
    def control_id(self) -> str:
        """MSH-10 (at most 20 characters): unique per sent message."""
        return f"LOAD{self.seq:010d}"


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    if high <= low:
        return low
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _defect(rng: random.Random, shares: Shares, kind: Kind, originals: int) -> Defect:
    x = rng.random()
    if x < shares.unqualified:
        return Defect.UNQUALIFIED
    x -= shares.unqualified
    if x < shares.duplicates:
        return Defect.DUPLICATE if originals else Defect.NONE
    x -= shares.duplicates
    if x < shares.bad_inputs:
        return (
            Defect.BAD_HL7
            if kind.channel is Channel.MLLP and rng.random() < 0.5
            else (Defect.BROKEN_CDA)
        )
    return Defect.NONE


def plan(profile: Profile) -> list[PlannedDocument]:
    """Every document of the replay, in send order (``at_s`` never decreases)."""
    profile.check()
    rng = random.Random(profile.seed)  # noqa: S311 (a reproducible replay, not a secret)
    count, wall = profile.document_count(), profile.wall_seconds()
    curve = ArrivalCurve(hourly_weights(profile.span)) if profile.rate is None else None
    sectors = profile.sectors
    cumulative = _cumulative([s.share for s in sectors])
    docs: list[PlannedDocument] = []
    originals: list[PlannedDocument] = []
    for seq in range(count):
        q = (seq + 0.5) / count
        at_s = curve.at(q) * wall / profile.span_seconds() if curve else q * wall
        sector = sectors[bisect.bisect_right(cumulative, rng.random())]
        defect = _defect(rng, profile.shares, sector.kind, len(originals))
        if defect is Defect.DUPLICATE:  # a recent document sent again
            recent = originals[-200:]
            docs.append(_duplicate(recent[rng.randrange(len(recent))], seq, at_s))
            continue
        doc = _original(rng, profile, sector, defect, seq=seq, at_s=at_s)
        docs.append(doc)
        if defect is Defect.NONE:
            originals.append(doc)
    return docs


def _original(
    rng: random.Random, profile: Profile, sector: Sector, defect: Defect, *, seq: int, at_s: float
) -> PlannedDocument:
    """A document sent for the first time: its patient, PDF size and lab results drawn."""
    # Patients: the unqualified ones are their own tenth of the pool, never mixed with
    # qualified documents of the same patient (a downgrade would block the patient).
    qualified_pool = profile.patients - profile.patients // 10
    patient = (
        qualified_pool + rng.randrange(profile.patients - qualified_pool)
        if defect is Defect.UNQUALIFIED
        else rng.randrange(qualified_pool)
    )
    kind = sector.kind
    return PlannedDocument(
        seq=seq,
        at_s=at_s,
        sector=sector.name,
        kind=kind,
        patient=patient,
        defect=defect,
        pdf_bytes=1000 * _log_uniform(rng, *kind.pdf_kb),
        results=_log_uniform(rng, *kind.results) if kind.results[1] else 0,
    )


def _duplicate(source: PlannedDocument, seq: int, at_s: float) -> PlannedDocument:
    return replace(source, seq=seq, at_s=at_s, defect=Defect.DUPLICATE, copy_of=source.seq)


def _cumulative(shares: list[float]) -> list[float]:
    total, out, running = sum(shares), [], 0.0
    for share in shares[:-1]:
        running += share / total
        out.append(running)
    return out


def expected_mix(profile: Profile) -> dict[str, float]:
    """Each sector's share of the replay (the profile's shares, normalised)."""
    total = sum(s.share for s in profile.sectors)
    return {s.name: s.share / total for s in profile.sectors}
