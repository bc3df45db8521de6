"""A real HTTP server on loopback that records what it is sent: each POST's body
as N.json and its headers as N.headers in OUT (N from 1), answered 204.

    recorder.py PORT OUT
"""
import http.server
import itertools
import os
import sys

port, out = int(sys.argv[1]), sys.argv[2]
numbers = itertools.count(1)


class Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        n = next(numbers)
        with open(os.path.join(out, f"{n}.headers"), "w") as f:
            f.write(str(self.headers))
        with open(os.path.join(out, f"{n}.tmp"), "wb") as f:
            f.write(body)
        os.rename(os.path.join(out, f"{n}.tmp"), os.path.join(out, f"{n}.json"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


print("listening", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Recorder).serve_forever()
