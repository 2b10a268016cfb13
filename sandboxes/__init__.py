"""Honest local stand-ins for national services (DMP, later INSi), for tests and the demo.

They listen on 127.0.0.1 by default, validate what they receive as the real
service would, and keep what they accept for inspection.
"""
