"""The DMP sink: the client, the submission, the sink's shell, ZAM^Z01; TD0.2 before feeding
(``status``, ``td02``), the DMP's entryUUIDs (``entries``), the table of DMP error codes
(``error_codes``), the VIHF subject (``subject``), what an outcome emits (``report``).

Errors (DmpError: DmpUnavailable is retried, DmpRejected is not) are drawn with the
other delivery errors in :mod:`consumers`.
"""
