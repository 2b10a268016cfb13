"""The vocabulary every stage shares, pure: INS, CDA identifiers and the safe XML parser,
lab results, HL7 time, XDS metadata, MSSanté addresses.

It imports only the core (:mod:`relais`) and the standard libraries.

Errors, the one drawing for the package. All pure and never retriable (the same input
fails again); the caller decides what they become, and messages name the element or the
rule, never patient data::

    Hl7TimeError (ValueError)   not an HL7 TS Relais can place in time (says what is wrong):
                                the XDS metadata reports it as InvalidValue; the transcode
                                stage reads an unplaceable validation time as absent
    MetadataError (ValueError)  the XDS metadata of a CDA cannot be derived: ``element``
     │                          names the CDA element, ``rule`` says why. The DMP sink
     │                          dead-letters the request; the MSSanté sender reports it as
     │                          a MailFormatError (``xdm-metadata``)
     ├── NotACda               the bytes are not a well-formed CDA R2 ClinicalDocument
     ├── MissingElement        a required element or attribute is absent or empty
     ├── CodeOutsideValueSet   a code is not in the value set the metadata draws from
     └── InvalidValue          a value has the wrong form (a time that is not HL7 TS, a
                               time without its offset)

An MSSanté address that breaks a rule raises :class:`relais.mail.errors.AddressError`
(the mail tree, drawn there).
"""
