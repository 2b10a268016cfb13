"""Delivery: the sinks that hand a document over where it is going.

:mod:`consumers.dmp` files it in the patient's DMP over the IHE transactions of
:mod:`consumers.ihe` (ITI-41 with a signed submission set, ITI-18, ITI-57, ITI-62, MTOM/XOP,
the VIHF) after TD0.2, and lifts an embargo with TD3.3b; :mod:`consumers.notify` tells the
patient (MSSanté mailbox, e-mail, SMS), once, when the release policy allows.

Errors, the one drawing for the package (messages name fields and codes, never patient
data or addresses). The IHE builders and answer readers are pure: their errors never reach
a topic as they are, the DMP sink turns each into a :class:`~consumers.dmp.submission.DmpError`
that says whether trying again can help (:mod:`consumers.dmp.error_codes` decides from the
DMP's code)::

    consumers.ihe (pure wire formats, the client's side only)
    Iti41Error (ValueError)     an ITI-41 answer is not readable ITI-41
    Iti18Error (ValueError)     an ITI-18 query cannot be built, or its answer is not readable
    Iti57Error (ValueError)     a metadata update (TD3.3b) cannot be built from the entry
    Iti62Error (ValueError)     a Delete Document Set that names no entry
    DsgError (ValueError)       the submission set cannot be signed (IHE DSG, XAdES)
    MtomError (ValueError)      a body is not a well-formed MTOM/XOP package
    VihfError (ValueError)      a VIHF cannot be built (incomplete identity)
    SoapFault                   the answer is a SOAP 1.2 Fault: ``code`` Sender or Receiver

    consumers.dmp
    Td02Error (ValueError)      a TD0.2 answer that does not read: refused (TD02Unreadable)
    VisibilityError (ValueError)  a stored visibility lift that does not read back
    DmpError                    base; ``code``: the XDS errorCode, fault subcode or HTTP status
     ├── DmpUnavailable         unreachable, TLS, timeout, HTTP 5xx/408/429, a Receiver fault,
     │                          a "busy" errorCode, an unreadable answer: retried with backoff
     └── DmpRejected            a Sender fault or a Failure: reported REJECTED, not retried

    consumers.notify
    NotifyError                 what the notification core refuses (none is retried)
     ├── NotifyInputError       a request the notifier cannot use: dead-lettered
     │                          (also a relais.deadletter.StageFailure)
     ├── LedgerError            a ledger record that does not read back: counted, skipped
     └── IllegalTransition      a ledger state change the life cycle forbids: a bug
    ChannelError                a notification did not go out; ``code`` is safe to report
     ├── ChannelUnavailable     timeout, connection, SMTP 4xx, SMS gateway 408/425/429/5xx:
     │                          the ledger keeps it pending and tries again with backoff
     └── ChannelRejected        SMTP 5xx, another gateway 4xx, no usable address, opted out:
                                reported REJECTED, not retried
    ChannelConfigError (ValueError)  a channel setting cannot be used: the sink does not start
    PreferencesError (ValueError)    the preferences file is unreadable or an entry is wrong
                                     (names the entry): the sink does not start
"""
