"""The notification sink: schedule, preferences, rate limits, channels, the shell.

Errors (NotifyError, ChannelError and the configuration errors) are drawn with the
other delivery errors in :mod:`consumers`.
"""
