"""The DMP sink: the client, the submission, the sink's shell, ZAM^Z01."""
