"""Who may see a document, as the XDS confidentiality flags the DMP and MSSanté carry.

The route stage's release decision (a ``Release`` record: hidden from professionals,
from legal representatives, visible to the patient from a date) becomes the MetaDMPMSS
visibility flags (../shared/STANDARDS.md §2, §4) both the DMP filing and the XDM
package of a mail write.
"""

from __future__ import annotations

from datetime import datetime

from relais.contracts import Record


def visibility_flags(release: Record | None, now: datetime) -> dict[str, bool]:
    """The MetaDMPMSS visibility flags the release decision stands for (XDS confidentiality).

    A document under embargo (visible to the patient only later) is filed invisible
    to the patient: the patient is told when the embargo lifts (notifications), and
    the DMP's patient-visibility update (TD3.3b) is what a later release would send.
    """
    if not release:
        return {}
    visible_from = release["patient_visible_from"]
    return {
        "MASQUE_PS": bool(release["hidden_from_professionals"]),
        "INVISIBLE_PATIENT": visible_from is None or visible_from > now,
        "INVISIBLE_REP_LEGAUX": bool(release["hidden_from_legal_representatives"]),
    }
