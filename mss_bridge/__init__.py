"""The MSSanté bridge: documents out as mails (XDM package, X-MSS headers), mails in (IMAP).

Out: :mod:`mss_bridge.compose` builds the mail of a delivery request, :mod:`mss_bridge.outbound`
is the sink that sends it (the SMTP client is :mod:`relais.mail.smtp`, shared with the
notification sink). In: :mod:`mss_bridge.imap_watcher` reads Relais's mailbox,
:mod:`mss_bridge.inbound` turns a received XDM package into a submission,
:mod:`mss_bridge.lps_delivery` sends each received document to the producer's DPI (LPS
volet MDM^T02 over MLLP) and answers the mail (MDN) once the DPI acknowledged, and
:mod:`mss_bridge.acknowledgements` reads DSNs and MDNs.

Errors: the ``MssError`` tree drawn in :mod:`relais.mail.errors` (one tree for the mail
client and the bridge; ``retriable`` says whether trying again later can succeed).
"""
