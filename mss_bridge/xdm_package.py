"""Build and unpack ``IHE_XDM.ZIP`` packages (pure, in memory).

Layout (IHE ITI TF-2b §3.32, STANDARDS.md §5)::

    INDEX.HTM                       what the package holds, for a human
    README.TXT                      who made it (sending system and vendor)
    IHE_XDM/SUBSET01/METADATA.XML   ebRIM SubmitObjectsRequest (mss_bridge.xdm_metadata)
    IHE_XDM/SUBSET01/DOC0001.XML    the CDA R2 document, byte for byte

Unpacking is defensive: a size and entry-count limit (zip bombs), no absolute or
``..`` paths, every document the metadata names must be in the package and match
its ``hash`` (SHA-1) and ``size`` slots.
"""

from __future__ import annotations

import hashlib
import html
import io
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Final

from domain.xds.metadata import DocumentEntry
from mss_bridge.xdm_metadata import PackagedDocument, SubmissionSet, metadata_xml, read_metadata
from relais.mail.errors import PackageError

PACKAGE_NAME: Final = "IHE_XDM.ZIP"
SUBSET: Final = "SUBSET01"
MAX_TOTAL_BYTES: Final = 64 << 20
MAX_ENTRIES: Final = 200
# A fixed timestamp: the same document always gives the same package bytes.
_ZIP_TIME: Final = (2000, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class XdmDocument:
    """A document to package: its exact bytes and its DocumentEntry."""

    content: bytes
    entry: DocumentEntry


@dataclass(frozen=True)
class UnpackedDocument:
    """A document found in a package, checked against its metadata."""

    metadata: PackagedDocument
    content: bytes
    path: str


def build_package(
    documents: list[XdmDocument], submission: SubmissionSet, *, sender: str, product: str
) -> bytes:
    """The ZIP bytes of one submission set holding ``documents`` (CDA R2)."""
    if not documents:
        raise PackageError("an XDM package needs at least one document")
    files = [(f"DOC{n:04d}.XML", d) for n, d in enumerate(documents, start=1)]
    metadata = metadata_xml(submission, [(d.entry, name) for name, d in files])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _write(archive, "INDEX.HTM", _index(files, submission).encode("utf-8"))
        _write(archive, "README.TXT", _readme(sender, product).encode("utf-8"))
        _write(archive, f"IHE_XDM/{SUBSET}/METADATA.XML", metadata)
        for name, document in files:
            _write(archive, f"IHE_XDM/{SUBSET}/{name}", document.content)
    return out.getvalue()


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _index(files: list[tuple[str, XdmDocument]], submission: SubmissionSet) -> str:
    rows = "\n".join(
        f'<li><a href="IHE_XDM/{SUBSET}/{name}">{html.escape(d.entry.title)}</a> '
        f"({html.escape(d.entry.type_code.display)})</li>"
        for name, d in files
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>IHE XDM</title></head>'
        f"<body><h1>{html.escape(submission.title)}</h1>\n"
        f'<p>Submission set <a href="IHE_XDM/{SUBSET}/METADATA.XML">{SUBSET}</a> '
        f"({html.escape(submission.unique_id)})</p>\n<ul>\n{rows}\n</ul></body></html>\n"
    )


def _readme(sender: str, product: str) -> str:
    return (
        "IHE XDM package (IHE ITI TF-2b 3.32), made for MSSante.\r\n"
        f"Sending system: {sender}\r\n"
        f"Software: {product}\r\n"
        "Contents: INDEX.HTM lists the documents; IHE_XDM/<submission set>/METADATA.XML\r\n"
        "holds their XDS metadata.\r\n"
    )


def unpack_package(data: bytes) -> list[UnpackedDocument]:
    """Every document of every submission set in the package, verified against METADATA.XML."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise PackageError(f"{PACKAGE_NAME} is not a ZIP archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise PackageError(f"{PACKAGE_NAME} holds {len(infos)} entries (limit {MAX_ENTRIES})")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise PackageError(f"{PACKAGE_NAME} unpacks to more than {MAX_TOTAL_BYTES} bytes")
        names = {_safe_name(i.filename): i for i in infos if not i.is_dir()}
        subsets = sorted(
            n
            for n in names
            if n.upper().startswith("IHE_XDM/")
            and n.upper().endswith("/METADATA.XML")
            and n.count("/") == 2
        )
        if not subsets:
            raise PackageError(f"{PACKAGE_NAME} has no IHE_XDM/<submission set>/METADATA.XML")
        found = []
        for metadata_name in subsets:
            folder = posixpath.dirname(metadata_name)
            for entry in read_metadata(_read(archive, names[metadata_name])):
                path = _resolve(entry.uri, folder, names)
                content = _read(archive, names[path])
                _verify(entry, content)
                found.append(UnpackedDocument(entry, content, path))
        return found


def _safe_name(name: str) -> str:
    normal = posixpath.normpath(name.replace("\\", "/"))
    if normal.startswith(("/", "../")) or normal == ".." or ":" in normal.split("/")[0]:
        raise PackageError(f"{PACKAGE_NAME} has an entry outside the package: {name!r}")
    return normal


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
        raise PackageError(f"{PACKAGE_NAME}: {info.filename} cannot be read ({exc})") from None


def _resolve(uri: str, folder: str, names: dict[str, zipfile.ZipInfo]) -> str:
    """The URI slot is relative to the submission set folder (or to IHE_XDM/, as ANS writes)."""
    by_upper = {n.upper(): n for n in names}
    for candidate in (posixpath.join(folder, uri), posixpath.join("IHE_XDM", uri)):
        match = by_upper.get(posixpath.normpath(candidate).upper())
        if match:
            return match
    raise PackageError(f"METADATA.XML names {uri!r}, which is not in {PACKAGE_NAME}")


def _verify(entry: PackagedDocument, content: bytes) -> None:
    if len(content) != entry.size:
        raise PackageError(
            f"{entry.uri}: {len(content)} bytes, but METADATA.XML says {entry.size}: "
            "the package was altered or built wrong"
        )
    digest = hashlib.sha1(content, usedforsecurity=False).hexdigest()
    if digest != entry.hash_sha1:
        raise PackageError(
            f"{entry.uri}: SHA-1 {digest} differs from the hash in METADATA.XML "
            f"({entry.hash_sha1}): the package was altered or built wrong",
            reason_code="xdm-hash-mismatch",
        )
