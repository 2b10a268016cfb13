"""Sending mail: the SMTP client with mutual TLS, its errors and metrics.

Shared by the MSSanté bridge and the notification sink.
"""
