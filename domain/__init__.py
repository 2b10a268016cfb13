"""The vocabulary every stage shares, pure: INS, CDA identifiers and the safe XML parser,
lab results, HL7 time, XDS metadata, MSSanté addresses.

It imports only the core (:mod:`relais`) and the standard libraries.
"""
