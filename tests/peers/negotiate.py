#!/usr/bin/env python3
"""What a modality insists on at association time, made with pynetdicom (tests/receive.rs).

    negotiate.py PORT retired FILE
        proposes every retired storage class pydicom knows, then stores FILE as an
        instance of one of them; prints the contexts accepted and refused and the
        C-STORE status.
    negotiate.py PORT identity USER PASSWORD
        associates with a User Identity (username and password, positive response
        requested); prints whether it was accepted and the server response.
"""
import json
import sys

from pydicom import dcmread
from pydicom._uid_dict import UID_dictionary
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import UltrasoundImageStorage

VL_IMAGE_TRIAL = "1.2.840.10008.5.1.4.1.1.77.1"


def retired_storage_classes():
    return sorted(
        uid for uid, (name, kind, _, retired, _) in UID_dictionary.items()
        if kind == "SOP Class" and retired and "Storage" in name
        and "Commitment" not in name)


def retired(port, path):
    ae = AE(ae_title="PYSCU")
    classes = retired_storage_classes()
    for uid in classes:
        ae.add_requested_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="UPLINK")
    result = {"proposed": classes, "accepted": [], "refused": [], "store_status": None}
    if not assoc.is_established:
        print(json.dumps(result))
        return
    for context in assoc.accepted_contexts:
        result["accepted"].append(context.abstract_syntax)
    for context in assoc.rejected_contexts:
        result["refused"].append(context.abstract_syntax)
    ds = dcmread(path)
    ds.SOPClassUID = VL_IMAGE_TRIAL
    ds.file_meta.MediaStorageSOPClassUID = VL_IMAGE_TRIAL
    status = assoc.send_c_store(ds)
    result["store_status"] = int(status.Status) if status else None
    assoc.release()
    print(json.dumps(result))


def identity(port, user, password):
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(UltrasoundImageStorage)
    item = UserIdentityNegotiation()
    item.user_identity_type = 2
    item.primary_field = user.encode()
    item.secondary_field = password.encode()
    item.positive_response_requested = True
    assoc = ae.associate("127.0.0.1", port, ae_title="UPLINK", ext_neg=[item])
    result = {"established": assoc.is_established, "rejected": assoc.is_rejected,
              "server_response": None}
    if assoc.is_established:
        answer = assoc.acceptor.user_identity
        result["server_response"] = None if answer is None else (answer.server_response or b"").hex()
        assoc.release()
    print(json.dumps(result))


if __name__ == "__main__":
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "retired":
        retired(port, sys.argv[3])
    else:
        identity(port, sys.argv[3], sys.argv[4])
