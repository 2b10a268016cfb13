"""Intake: where documents come onto the bus (HL7 v2 over MLLP, the producer library, files).

:mod:`producers.hl7` reads and writes HL7 v2 (messages, ACKs, business ACKs);
:mod:`producers.mllp` is the gateway that takes messages in and the forwarder that sends
ZAMs back; :mod:`producers.publisher` and :mod:`producers.ingest` parse, validate, seal and
publish, returning once the broker acknowledged (``acks=all``).

Errors, the one drawing for the package (messages name the field and the rule, never
patient data; the HL7 side's ERR details are in :mod:`producers.hl7.errors`)::

    Hl7Error                    an inbound message cannot be accepted; never retriable:
     │                          resending the same bytes fails again. The MLLP gateway
     │                          answers AE with an ERR segment (and dead-letters a sealed
     │                          copy); the producer library raises it to its caller
     ├── Hl7ParseError          not HL7 at all: no MSH first, bad encoding characters,
     │                          an unknown charset, bytes that do not decode
     └── Hl7ValidationError     parsed, but a rule of HL7 or of the volet failed (also how
                                the gateway says AR "not stored, resend later" when the
                                broker did not acknowledge)
    DocumentFileError (ValueError)  a document file or its sidecar cannot be published
                                    (``relais publish``): says what to fix; not retried
    AckRouteError (ValueError)      RELAIS_ACK_ROUTES cannot be read (names the entry): the
                                    ack forwarder does not start
    FrameTooLarge                   an MLLP frame grew past the gateway's limit: answered AR
                                    and the connection closed; nothing is stored
    Retry                           the producer could not take a ZAM now (unreachable, AR):
                                    the partition pauses and the ZAM is sent again with backoff
"""
