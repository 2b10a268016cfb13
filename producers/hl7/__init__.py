"""HL7 v2: parsing a message, its segments and errors, building ACKs and business ACKs.

The patient (PID) is read in :mod:`producers.hl7.patient`, the rest of a message in
:mod:`producers.hl7.message`. Errors: the Hl7Error tree of :mod:`producers.hl7.errors`,
drawn with the other intake errors in :mod:`producers`.
"""
