"""The IHE transactions the DMP speaks: ITI-41, ITI-18, ITI-62, MTOM/XOP, the VIHF.

All pure (bytes and XML in and out). Their errors (Iti41Error, Iti18Error, Iti62Error,
MtomError, VihfError, SoapFault) are drawn with the other delivery errors in
:mod:`consumers`.
"""
