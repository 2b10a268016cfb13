"""The stages between intake and delivery: identity, transcode, route (Faust agents).

Each stage is a :class:`streams.stage.Stage` run by the one loop in
:mod:`streams.stage_loop`; :mod:`streams.worker` assembles the named stages into one Faust
worker. The three stage packages never import each other.

Errors. A stage's handler raises :class:`relais.deadletter.StageFailure` (or a subclass)
for a record it cannot process; the loop dead-letters the record and goes on (never retried:
the record is wrong, an operator replays it after a fix). The other errors below are raised
by the pure cores and caught in the stage, which turns them into a StageFailure, a hold or a
retry::

    StageFailure (relais.deadletter)   the record is wrong: dead-letter it
     ├── TranscodeFailure              transcode: the document cannot become a CDA to deliver
     └── WrapFailure                   transcode: a PDF cannot be wrapped as a CDA N1
    CdaInvalid                         a CDA breaks the CI-SIS header rules or the CDA R2 schema
    SeriesError                        a replacement/deletion that does not follow its original
    CatalogueError                     a lab's catalogue or the LOINC/UCUM tables
     ├── ReferenceDataError            the LOINC table or UCUM list cannot be read (at start)
     ├── InvalidCatalogue              a catalogue file breaks the format (names the line)
     ├── UnknownFacility               no catalogue for the sending laboratory
     └── VersionConflict               a catalogue version already loaded with other content
    InsiError                          identity: the INSi teleservice
     ├── InsiUnavailable               timeout, 5xx, circuit open: documents wait, retried
     └── InsiRejected                  INSi answered no / an error code: the identity is held
    CircuitOpen                        identity: INSi calls refused while the circuit is open
    TraitsError                        identity: traits that cannot be compared (held)
    IllegalTransition                  identity: a status change the RNIV forbids (a bug)
    PolicyError                        route: the release policy file is invalid (at start)
"""
