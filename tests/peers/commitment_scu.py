#!/usr/bin/env python3
"""A modality asking for storage commitment, made with pynetdicom (tests/commitment.rs).

    commitment_scu.py PORT CALLED MODE [--listen PORT] [--wait SECS] UID...

Sends an N-ACTION (Request Storage Commitment) to the agent on 127.0.0.1:PORT for
the ultrasound instances UID... and prints one JSON line with the N-ACTION status
and the report it got, if any:

  MODE "release": releases at once and waits for the report on its own SCP
                  (--listen PORT), as GE LOGIQ and Orthanc do;
  MODE "stay":    keeps the association open until the report arrives on it;
  MODE "ask":     releases at once and waits for nothing (the report goes
                  elsewhere, e.g. to a later run with MODE "listen");
  MODE "listen":  sends nothing and only waits for a report on --listen PORT.
"""
import argparse
import json
import threading
import time

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
WELL_KNOWN = "1.2.840.10008.1.20.1.1"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("called")
    p.add_argument("mode", choices=["release", "stay", "ask", "listen"])
    p.add_argument("uids", nargs="*")
    p.add_argument("--listen", type=int)
    p.add_argument("--wait", type=float, default=30)
    p.add_argument("--aet", default="PYSCU")
    p.add_argument("--class-uid", default=US_IMAGE)
    args = p.parse_intermixed_args()

    reports = []
    arrived = threading.Event()

    def on_report(event):
        info = event.event_information
        reports.append({
            "event_type": event.event_type,
            "on": "same" if event.assoc.is_requestor else "new",
            "transaction": str(info.TransactionUID),
            "committed": [str(i.ReferencedSOPInstanceUID)
                          for i in info.get("ReferencedSOPSequence", [])],
            "failed": [[str(i.ReferencedSOPInstanceUID), int(i.FailureReason)]
                       for i in info.get("FailedSOPSequence", [])],
        })
        arrived.set()
        return 0x0000, None

    handlers = [(evt.EVT_N_EVENT_REPORT, on_report)]
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    server = None
    if args.listen:
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        server = ae.start_server(("127.0.0.1", args.listen), block=False,
                                 evt_handlers=handlers)

    result = {"action_status": None, "reports": reports}
    transaction = generate_uid()
    result["transaction"] = transaction
    if args.mode != "listen":
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called,
                             evt_handlers=handlers if args.mode == "stay" else [])
        if not assoc.is_established:
            result["error"] = "association not established"
            print(json.dumps(result), flush=True)
            return
        request = Dataset()
        request.TransactionUID = transaction
        items = []
        for uid in args.uids:
            item = Dataset()
            item.ReferencedSOPClassUID = args.class_uid
            item.ReferencedSOPInstanceUID = uid
            items.append(item)
        request.ReferencedSOPSequence = items
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, WELL_KNOWN)
        result["action_status"] = int(status.Status) if status else None
        if args.mode == "stay":
            deadline = time.monotonic() + args.wait
            while not arrived.is_set() and time.monotonic() < deadline and assoc.is_established:
                time.sleep(0.1)
        assoc.release()
    if args.mode in ("release", "listen"):
        arrived.wait(args.wait)
        # The SCP answers the report before the agent releases; let it finish.
        time.sleep(0.5)
    if server:
        server.shutdown()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
