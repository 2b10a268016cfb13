"""The one seam to the DMP: ``DmpClient.file(submission)`` over ITI-41 and mutual TLS.

For each document it signs a VIHF for the patient with the structure's key, naming the
document's author when the producer gave one, else the structure's responsible person
(:mod:`consumers.dmp.subject`, :mod:`consumers.ihe.vihf`; reused for the same patient and
subject while it is valid, :mod:`consumers.ihe.vihf_cache`), builds the MTOM ITI-41
request (:mod:`consumers.ihe.iti41`), posts it over HTTPS with the structure's certificate
(one keep-alive connection pool), and reads the answer
(:func:`consumers.dmp.submission.read_answer`). Connection errors, TLS failures and
timeouts are :class:`DmpUnavailable` (try again later): a re-send of the same document is
harmless, the DMP recognises it by its uniqueId and hash. Beside ITI-41: TD0.2
(:meth:`DmpClient.status`, :mod:`consumers.dmp.td02`), ITI-18 (:meth:`DmpClient.find`: the
entryUUIDs the DMP assigned) and ITI-62 (:meth:`DmpClient.delete`), on endpoints beside the
repository's.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from lxml import etree

from consumers.dmp import td02
from consumers.dmp.request import xds_ids
from consumers.dmp.subject import subject_of
from consumers.dmp.submission import (
    Answer,
    DmpRejected,
    DmpUnavailable,
    Submission,
    ins_of,
    read_answer,
)
from consumers.ihe import iti18, iti41, iti57, iti62
from consumers.ihe.vihf import Role, SigningKey, Subject, VihfIdentity
from consumers.ihe.vihf_cache import VihfCache
from domain.xds import ebrim
from relais import __version__
from relais.settings import DmpSettings, Settings, SettingsError


@dataclass(frozen=True)
class DmpConfig:
    """Where and as whom the sink files: the endpoint, the structure's TLS and VIHF identity."""

    endpoint: str
    source_id: str  # submission set sourceId: the OID of this sending system
    identity: VihfIdentity
    signing: SigningKey
    client_cert: Path
    client_key: Path
    ca_file: Path | None = None  # None: the system's trust store
    timeout_s: float = 30.0
    status_cache_s: float = 86400.0  # TD0.2: an open DMP is trusted that long

    @classmethod
    def from_settings(cls, settings: Settings) -> DmpConfig:
        """The DMP configuration, or :class:`SettingsError` naming every missing variable."""
        dmp = settings.dmp
        _check_required(dmp)
        if not dmp.url.startswith("https://"):
            raise SettingsError(f"RELAIS_DMP_URL={dmp.url!r}: the DMP is reached by https://")
        cert = _file("RELAIS_DMP_CLIENT_CERT", dmp.client_cert)
        key = _file("RELAIS_DMP_CLIENT_KEY", dmp.client_key)
        if dmp.ca_file is not None and not dmp.ca_file.is_file():
            raise SettingsError(f"RELAIS_DMP_CA_FILE={dmp.ca_file}: no such file")
        return cls(
            endpoint=dmp.url,
            source_id=dmp.source_id,
            identity=_identity(dmp, lps_id=f"relais-{settings.kafka.prefix}"),
            signing=SigningKey(cert.read_bytes(), key.read_bytes()),
            client_cert=cert,
            client_key=key,
            ca_file=dmp.ca_file,
            status_cache_s=dmp.status_cache_s,
        )


def _check_required(dmp: DmpSettings) -> None:
    """Refuse to start without the structure's certificate and VIHF identity, naming them all."""
    required = {
        "RELAIS_DMP_CLIENT_CERT": dmp.client_cert,
        "RELAIS_DMP_CLIENT_KEY": dmp.client_key,
        "RELAIS_DMP_STRUCTURE_ID": dmp.structure_id,
        "RELAIS_DMP_SUBJECT_ID": dmp.subject_id,
        "RELAIS_DMP_SUBJECT_NAME": dmp.subject_name,
        "RELAIS_DMP_SOURCE_ID": dmp.source_id,
        "RELAIS_DMP_LPS_HOMOLOGATION": dmp.lps_homologation,
    }
    if missing := [name for name, value in required.items() if not value]:
        raise SettingsError(
            "the DMP sink needs " + ", ".join(missing) + " (the structure's certificate "
            "and VIHF identity); `relais sandbox dmp` prints them for its test PKI"
        )


def _identity(dmp: DmpSettings, *, lps_id: str) -> VihfIdentity:
    """The VIHF identity the sink signs as: the structure, the responsible person, Relais."""
    return VihfIdentity(
        structure_id=dmp.structure_id,
        subject_id=dmp.subject_id,
        subject_name=dmp.subject_name,
        roles=roles_of(dmp.subject_role),
        activity_sector=dmp.activity_sector,
        lps_id=lps_id,
        lps_name="Relais",
        lps_version=__version__,
        lps_homologation=dmp.lps_homologation,
    )


def _file(name: str, path: Path | None) -> Path:
    if path is None or not path.is_file():
        raise SettingsError(f"{name}={path or ''}: no such file")
    return path


def roles_of(text: str) -> tuple[Role, ...]:
    """``code^OID[,code^OID…]`` (RELAIS_DMP_SUBJECT_ROLE) as VIHF roles."""
    roles = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, caret, scheme = item.partition("^")
        if not caret or not code or not scheme:
            raise SettingsError(f"RELAIS_DMP_SUBJECT_ROLE: {item!r} is not code^OID")
        roles.append(Role(code, scheme))
    if not roles:
        raise SettingsError("RELAIS_DMP_SUBJECT_ROLE: at least one role (code^OID) is needed")
    return tuple(roles)


def client_context(config: DmpConfig) -> ssl.SSLContext:
    """TLS that checks the DMP's certificate and presents the structure's."""
    ca = str(config.ca_file) if config.ca_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(config.client_cert, config.client_key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class DmpClient:
    """The one seam to the DMP endpoint: ``file(submission)``."""

    def __init__(self, config: DmpConfig) -> None:
        self.config = config
        self.vihfs = VihfCache(config.identity, config.signing)
        connector = aiohttp.TCPConnector(ssl=client_context(config))
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    def request(self, submission: Submission, now: datetime) -> tuple[str, bytes]:
        """(Content-Type, body) of the ITI-41 request for ``submission``, VIHF signed."""
        entry = submission.metadata
        if entry is None:
            raise DmpRejected("a DMP submission needs its DocumentEntry", code="MissingMetadata")
        config = self.config
        vihf = self.vihfs.signed(entry.patient_id, now, subject_of(entry, submission.content))
        submission_set = iti41.submission_set_of(entry, source_id=config.source_id, now=now)
        return iti41.request(
            entry,
            submission_set,
            submission.content,
            vihf=vihf,
            endpoint=config.endpoint,
            message_id=f"urn:uuid:{uuid.uuid4()}",
            replaces=submission.parent_entry_uuid,
            signing=config.signing,  # the DMP wants the submission set signed (IHE DSG)
        )

    async def file(self, submission: Submission) -> Answer:
        """File one document (ITI-41); a replacement whose parent's entryUUID is not known yet
        names the one the DMP holds (ITI-18), or is refused when the DMP holds none."""
        if submission.parent_unique_id and not submission.parent_entry_uuid:
            subject = subject_of(submission.metadata, submission.content)
            ids = xds_ids(submission.parent_unique_id)
            found = await self.find(ids, submission.patient_id, subject)
            if not found:
                raise DmpRejected(
                    "the document to replace is not in the DMP",
                    code="UnresolvedReferenceException",
                )
            submission = replace(submission, parent_entry_uuid=found[0])
        # signing and serialising take milliseconds of CPU: keep them off the event loop
        content_type, body = await asyncio.to_thread(self.request, submission, datetime.now(UTC))
        headers = {"Content-Type": content_type, "SOAPAction": iti41.ACTION}
        try:
            async with self._session.post(self.config.endpoint, data=body, headers=headers) as r:
                answer = await r.read()
                return read_answer(r.status, r.headers.get("Content-Type", ""), answer)
        except aiohttp.ClientSSLError as exc:  # a certificate refused, on either side
            raise DmpUnavailable(f"TLS with the DMP failed: {exc}", code="TLSFailure") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"DMP unreachable: {type(exc).__name__}"
            raise DmpUnavailable(reason, code="Unreachable") from None

    def _beside(self, name: str) -> str:
        """The DMP service ``name`` beside the repository's endpoint."""
        base, _, last = self.config.endpoint.rstrip("/").rpartition("/")
        return f"{base}/{name}" if last == "repository" else f"{self.config.endpoint}/{name}"

    @property
    def registry_endpoint(self) -> str:
        """The registry's stored-query endpoint, beside the repository's."""
        return self._beside("registry")

    @property
    def status_endpoint(self) -> str:
        """The patients service (TD0.2), beside the repository's endpoint."""
        return self._beside("patients")

    def _security(
        self, patient_id: str, now: datetime, subject: Subject | None = None
    ) -> etree._Element:
        """``wsse:Security`` holding a VIHF signed for ``patient_id`` by ``subject``."""
        vihf = self.vihfs.signed(patient_id, now, subject)
        security = etree.Element(f"{{{ebrim.WSSE}}}Security", nsmap={"wsse": ebrim.WSSE})
        security.append(vihf)
        return security

    def query(
        self,
        unique_ids: tuple[str, ...],
        patient_id: str,
        now: datetime,
        subject: Subject | None = None,
    ) -> bytes:
        """The ITI-18 GetDocuments request for ``unique_ids``, VIHF signed."""
        security = self._security(patient_id, now, subject)
        return iti18.get_documents(unique_ids, to=self.registry_endpoint, security=security)

    async def _registry(
        self, body: bytes, content_type: str, url: str | None = None
    ) -> tuple[int, bytes]:
        """POST ``body`` to the registry (or ``url``): (HTTP status, answer); outages raise."""
        headers = {"Content-Type": content_type}
        target = url or self.registry_endpoint
        try:
            async with self._session.post(target, data=body, headers=headers) as r:
                answer = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"DMP registry unreachable: {type(exc).__name__}"
            raise DmpUnavailable(reason, code="Unreachable") from None
        if status >= 500 or status in {408, 429}:
            raise DmpUnavailable(f"DMP registry answered HTTP {status}", code=f"HTTP{status}")
        return status, answer

    def status_query(self, patient_id: str, now: datetime, subject: Subject | None) -> bytes:
        """The TD0.2 request for ``patient_id``, VIHF signed."""
        ins, oid = ins_of(patient_id)
        security = self._security(patient_id, now, subject)
        source = self.config.source_id
        return td02.request(
            ins, oid, to=self.status_endpoint, source_id=source, now=now, security=security
        )

    async def status(self, patient_id: str, subject: Subject | None = None) -> str | None:
        """TD0.2: None when the patient's DMP exists, is open and may be fed; else the DMP's
        code (DMPNotFound, DMPClosed, DMPPatientOpposition, DMPAccessDenied...). An answer
        that is not TD0.2 is :class:`DmpRejected` ``TD02Unreadable``."""
        now = datetime.now(UTC)
        body = await asyncio.to_thread(self.status_query, patient_id, now, subject)
        status, answer = await self._registry(body, td02.CONTENT_TYPE, self.status_endpoint)
        if status >= 400:  # a SOAP Fault: refused (Sender) or unavailable (Receiver)
            read_answer(status, "application/soap+xml", answer)
        try:
            return td02.read_status(answer)
        except td02.Td02Error as exc:  # refused, not retried: it would read no better later
            reason = f"unreadable TD0.2 answer: {exc}"
            raise DmpRejected(reason, code=td02.UNREADABLE) from None

    async def find(
        self, unique_ids: tuple[str, ...], patient_id: str, subject: Subject | None = None
    ) -> tuple[str, ...]:
        """The entryUUIDs of the current (Approved) versions the DMP holds (ITI-18)."""
        return (await self.versions(unique_ids, patient_id, subject)).entry_uuids

    async def current(
        self, unique_id: str, patient_id: str, subject: Subject | None = None
    ) -> iti18.Found | None:
        """The Approved version of ``unique_id`` (lid, version, repositoryUniqueId, codes)."""
        return (await self.versions(xds_ids(unique_id), patient_id, subject)).current

    async def versions(
        self, unique_ids: tuple[str, ...], patient_id: str, subject: Subject | None = None
    ) -> iti18.Answer:
        """Every version the DMP holds of ``unique_ids`` (ITI-18 GetDocuments, LeafClass)."""
        now = datetime.now(UTC)
        body = await asyncio.to_thread(self.query, unique_ids, patient_id, now, subject)
        status, answer = await self._registry(body, iti18.CONTENT_TYPE)
        if status >= 400:  # a SOAP Fault: refused (Sender) or unavailable (Receiver)
            read_answer(status, "application/soap+xml", answer)
        try:
            found = iti18.read_answer(answer)
        except iti18.Iti18Error as exc:
            raise DmpUnavailable(f"unreadable registry answer: {exc}", code="BadAnswer") from None
        if found.status != "Success":
            raise DmpUnavailable(
                "the registry query failed: " + ", ".join(found.errors), code="QueryFailed"
            )
        return found

    async def holds(self, unique_id: str, patient_id: str, subject: Subject | None = None) -> bool:
        """Whether the DMP already holds ``unique_id``: the reconcile before a resend."""
        return bool(await self.find((unique_id,), patient_id, subject))

    async def delete(
        self, entry_uuids: tuple[str, ...], patient_id: str, subject: Subject | None = None
    ) -> Answer:
        """Remove documents from the DMP (ITI-62 Delete Document Set)."""
        now = datetime.now(UTC)
        security = await asyncio.to_thread(self._security, patient_id, now, subject)
        body = iti62.delete_document_set(entry_uuids, to=self.registry_endpoint, security=security)
        status, answer = await self._registry(body, iti62.CONTENT_TYPE)
        return read_answer(status, "application/soap+xml", answer)

    def update_request(
        self, update: iti57.Update, patient_id: str, now: datetime, subject: Subject | None
    ) -> bytes:
        """The ITI-57 Update Document Set request (TD3.3b), VIHF signed."""
        return iti57.update_document_set(
            update,
            source_id=self.config.source_id,
            submission_time=now.astimezone(UTC).strftime("%Y%m%d%H%M%S"),
            vihf=self.vihfs.signed(patient_id, now, subject),
            to=self.registry_endpoint,
        )

    async def update(
        self, update: iti57.Update, patient_id: str, now: datetime, subject: Subject | None = None
    ) -> Answer:
        """A metadata update (ITI-57): TD3.3b, the patient's visibility of a filed document."""
        body = await asyncio.to_thread(self.update_request, update, patient_id, now, subject)
        status, answer = await self._registry(body, iti57.CONTENT_TYPE)
        return read_answer(status, "application/soap+xml", answer)

    async def close(self) -> None:
        await self._session.close()
