"""The DMP sink: the client, the submission, the sink's shell, ZAM^Z01.

Errors (DmpError: DmpUnavailable is retried, DmpRejected is not) are drawn with the
other delivery errors in :mod:`consumers`.
"""
