"""CPU per signed VIHF: the structure's key loaded once, against loaded for every request.

Run: ``.venv/bin/python -m benchmarks.vihf_signing [--signatures N]``. A test PKI (the DMP
sandbox's: RSA 2048, like an IGC-Santé "cachet") is written to a temporary folder; then,
one after the other in this process:

per-request key (the baseline, the DMP sink before issue 16)
    a new :class:`~consumers.ihe.vihf.SigningKey` for each signature, as if the PEM were
    loaded for each request: what ``signxml`` did with the PEM bytes it was given.
loaded once
    one ``SigningKey`` for every signature: its key object is loaded on first use.

Both print the CPU milliseconds per signed assertion (``time.process_time``) and the
ratio. The profile that led here (issue 16): 72 % of the DMP sink's busy time in
``XMLSigner.sign``, of which 95 % was ``load_pem_private_key``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from consumers.ihe.vihf import Role, SigningKey, VihfIdentity, signed_vihf
from sandboxes.pki import write_test_pki

IDENTITY = VihfIdentity(
    structure_id="1120459876",
    subject_id="801234567866",
    subject_name="DEMO Biologiste",
    roles=(Role("10", "1.2.250.1.71.1.2.7", "Médecin"),),
    activity_sector="SA25^1.2.250.1.71.4.2.4",
    lps_id="relais-bench",
    lps_name="Relais",
    lps_version="0.1.0",
    lps_homologation="SANDBOX",
)
PATIENT = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"


def cpu_ms_per_call(signatures: int, sign: Callable[[], object]) -> float:
    sign()  # warm up (imports, first key load for the cached case)
    started = time.process_time()
    for _ in range(signatures):
        sign()
    return (time.process_time() - started) / signatures * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--signatures", type=int, default=200, help="per phase (default 200)")
    args = parser.parse_args()
    pki = write_test_pki(Path(tempfile.mkdtemp(prefix="vihf-bench-")), structure_id="1120459876")
    cert, key_pem = pki.client_cert.read_bytes(), pki.client_key.read_bytes()
    now = datetime.now(UTC)
    once = SigningKey(cert, key_pem)
    baseline = cpu_ms_per_call(
        args.signatures, lambda: signed_vihf(IDENTITY, PATIENT, SigningKey(cert, key_pem), now=now)
    )
    cached = cpu_ms_per_call(args.signatures, lambda: signed_vihf(IDENTITY, PATIENT, once, now=now))
    print(f"signatures per phase: {args.signatures}")
    print("| key | CPU ms per signed VIHF |")
    print("|---|---:|")
    print(f"| loaded for each request (baseline) | {baseline:.2f} |")
    print(f"| loaded once | {cached:.2f} |")
    print(f"ratio: {baseline / cached:.1f}x less CPU per signature")


if __name__ == "__main__":
    main()
