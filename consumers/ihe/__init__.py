"""The IHE transactions the DMP speaks, as a client: ITI-41 (with the IHE DSG signed
submission set), ITI-18, ITI-57, ITI-62, MTOM/XOP, the VIHF.

All pure (bytes and XML in and out). Their errors (Iti41Error, Iti18Error, Iti57Error,
Iti62Error, DsgError, MtomError, VihfError, SoapFault) are drawn with the other delivery
errors in :mod:`consumers`. The DMP sandbox never reads requests with these modules: it has
its own readers, written from the specifications (:mod:`sandboxes`).
"""
