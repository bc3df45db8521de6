#!/usr/bin/env python3
"""The receive benchmark: uplink against dcmtk's storescp and dicom-rs's storescp.

Generates a corpus deterministically (200 single-frame US images 800x600 RGB, 50 JPEG
baseline multi-frame instances, one native clip of CLIP_MIB, one encapsulated PDF),
then sends each part with dcmtk storescu over loopback (one association, and four in
parallel) to each receiver, each started here on its own port and data dir, receivers
interleaved run by run so the machine's drift hits all alike:

  uplink identified / uplink strict   (fsync before every acknowledgement)
  dcmtk storescp +B                   (bit-preserving; TCP_NODELAY=1)
  dcmtk storescp                      (TCP_NODELAY=1)
  dcmtk storescp +B + fsync shim      (LD_PRELOAD: fsync each file and its folder
                                      before close, and the folder after a rename)
  dicom-rs storescp --promiscuous
  dcmtk storescp --ignore             (receives and stores nothing: as fast as dcmtk's
                                      storescu can send, the ceiling of every DICOM row)
  machine limit                       (the same bytes over loopback, each into its own
                                      file named in advance, one fsync each: the least
                                      a receiver that promises durability must do)

and reports medians and min/max of instances/s, MB/s, the receiver's peak RSS
(VmHWM), CPU seconds, bytes written per byte received (/proc/PID/io), device flushes
per instance (the disk's own flush counter in /sys/dev/block, read over the sending),
and each ratio to uplink strict; also uplink's idle RSS and start-up time. Output: a
Markdown table, printed and written to bench/results.md (or --out).

    bench/run.py [--rounds 5] [--clip-mib 1024] [--out FILE] [--only CORPUS]

Needs dcmtk and gcc (scripts/test.sh installs dcmtk); builds dicom-rs's storescp with
`cargo install dicom-storescp` into target/bench-tools when it is missing.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = "machine limit"
ENV = dict(os.environ, TCP_NODELAY="1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def proc_stat(pid):
    """(peak RSS KiB, CPU seconds, bytes written) of a live process."""
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/io") as f:
        written = next(int(l.split()[1]) for l in f if l.startswith("write_bytes:"))
    return hwm, cpu, written


def wait_port(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited: {proc.args}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"receiver did not listen: {proc.args}")


class Receiver:
    """One receiver process for one run."""

    def __init__(self, name, work, tools):
        self.name, self.port = name, free_port()
        self.dir = Path(tempfile.mkdtemp(dir=work))
        env = dict(ENV)
        if name.startswith("uplink"):
            profile = name.split()[1]
            dead = free_port()  # uploads wait: only receiving is measured
            (self.dir / "uplink.toml").write_text(
                f'[listener]\nport = {self.port}\nbind = "127.0.0.1"\nmax_associations = 8\n'
                f'[storage]\ndata_dir = "{self.dir}/data"\nmin_free_mib = 64\n'
                f'[[destination]]\nname = "cloud"\nurl = "http://127.0.0.1:{dead}/dicom-web"\nprofile = "{profile}"\ninsecure = true\n'
                f'retry_max_secs = 3600\n'
            )
            args = [str(tools["uplink"]), "serve", "--config", str(self.dir / "uplink.toml")]
        elif name.startswith("dcmtk"):
            args = ["storescp", "-aet", "UPLINK", "+xa", "-od", str(self.dir)]
            if "+B" in name:
                args.append("+B")
            if "fsync" in name:
                env["LD_PRELOAD"] = str(tools["shim"])
            if "--ignore" in name:
                args.append("--ignore")
            args.append(str(self.port))
        else:
            args = [str(tools["dicom-rs"]), "--promiscuous", "--calling-ae-title", "UPLINK", "-o", str(self.dir), "-p", str(self.port)]
        self.started = time.time()
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        self.base = proc_stat(self.proc.pid)

    def stop(self):
        stats = proc_stat(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        return stats


def send(port, files, parallel):
    groups = [files[i::parallel] for i in range(parallel)]
    start = time.time()
    procs = [
        subprocess.Popen(["storescu", "-R", "-xy", "-aec", "UPLINK", "127.0.0.1", str(port), *map(str, g)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for g in groups if g
    ]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.time() - start
    failed = [e.decode(errors="replace")[-300:] for p, e in zip(procs, errors) if p.returncode != 0]
    return elapsed, failed


def device_flushes(path):
    """Flush requests the disk holding `path` has completed (diskstats field 16)."""
    dev = os.stat(path).st_dev
    block = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if (block / "partition").exists():
        block = block.resolve().parent
    fields = (block / "stat").read_text().split()
    return int(fields[15]) if len(fields) > 15 else 0


def limit_run(work, tools, files, parallel):
    """The machine's limit for durable receiving (bench/limit.c): each instance's
    bytes over loopback TCP into its own file, named (and the name flushed)
    beforehand, written behind and fsync'd once, then a one-byte answer.
    Returns (seconds, device flushes)."""
    sink = Path(tempfile.mkdtemp(dir=work))
    server = subprocess.Popen([str(tools["limit"]), str(sink), str(len(files)), str(parallel)],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    groups = [files[i::parallel] for i in range(parallel)]

    def send(group):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for path in group:
                with open(path, "rb") as f:
                    c.sendall(os.fstat(f.fileno()).st_size.to_bytes(8, "big"))
                    c.sendfile(f)
                c.recv(1)

    senders = [threading.Thread(target=send, args=(g,)) for g in groups]
    flushes = device_flushes(sink)
    start = time.time()
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    elapsed = time.time() - start
    flushes = device_flushes(sink) - flushes
    server.wait()
    shutil.rmtree(sink, ignore_errors=True)
    return elapsed, flushes


def build_tools(work):
    sh("cargo", "build", "--release", "--quiet", "--bin", "uplink", "--example", "fixtures", cwd=ROOT)
    shim = work / "fsync-shim.so"
    sh("gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(ROOT / "bench" / "fsync-shim.c"), "-ldl")
    limit = work / "limit"
    sh("gcc", "-O2", "-pthread", "-o", str(limit), str(ROOT / "bench" / "limit.c"))
    dicom_rs = shutil.which("dicom-storescp") or ROOT / "target" / "bench-tools" / "bin" / "dicom-storescp"
    if not Path(dicom_rs).exists():
        print("building dicom-rs storescp (cargo install dicom-storescp) ...", file=sys.stderr)
        sh("cargo", "install", "--quiet", "--locked", "dicom-storescp", "--root", str(ROOT / "target" / "bench-tools"))
    return {"uplink": ROOT / "target/release/uplink", "shim": shim, "limit": limit, "dicom-rs": Path(dicom_rs)}


def make_corpus(work, clip_mib):
    fixtures = ROOT / "target/release/examples/fixtures"
    corpus = {}
    images = work / "images"
    images.mkdir()
    for i in range(1, 201):
        sh(str(fixtures), "phi", str(images / f"{i:03}.dcm"), f"P{i % 20}", str(i % 20), str(i))
    corpus["US images"] = sorted(images.iterdir())
    jpeg = work / "jpeg"
    jpeg.mkdir()
    for i in range(1, 51):
        sh(str(fixtures), "phi-jpeg", str(jpeg / f"{i:03}.dcm"), f"J{i % 5}", str(100 + i % 5), str(i), "10")
    corpus["JPEG multi-frame"] = sorted(jpeg.iterdir())
    clip = work / "clip.dcm"
    sh(str(fixtures), "clip", str(clip), "1.2.826.0.1.3680043.10.90.1", str(clip_mib))
    corpus[f"{clip_mib} MiB clip"] = [clip]
    pdf = work / "report.pdf"
    sh(str(fixtures), "pdf", str(pdf), "report")
    sh("pdf2dcm", "+pn", "DOE^JANE", str(pdf), str(work / "report.dcm"), stdout=subprocess.DEVNULL)
    corpus["PDF"] = [work / "report.dcm"]
    return corpus


def start_orthanc(work):
    port = free_port()
    root = Path(tempfile.mkdtemp(dir=work))
    (root / "orthanc.json").write_text(
        '{"Name": "bench", "StorageDirectory": "%s", "IndexDirectory": "%s", "HttpPort": %d, '
        '"DicomServerEnabled": false, "RemoteAccessAllowed": false, "AuthenticationEnabled": false, '
        '"Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"], '
        '"DicomWeb": {"Enable": true, "Root": "/dicom-web/"}}' % (root / "db", root / "db", port)
    )
    proc = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port, root


def orthanc_count(port):
    import json
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/statistics") as r:
        return json.load(r)["CountInstances"]


def upload_ours(work, tools, files):
    """Seconds for uplink to drain `files` (received first) into Orthanc, batch 8."""
    proc, port, root = start_orthanc(work)
    receiver = None
    try:
        agent_dir = Path(tempfile.mkdtemp(dir=work))
        dicom_port = free_port()
        (agent_dir / "uplink.toml").write_text(
            f'[listener]\nport = {dicom_port}\nbind = "127.0.0.1"\n[storage]\ndata_dir = "{agent_dir}/data"\nmin_free_mib = 64\n'
            f'[[destination]]\nname = "orthanc"\nurl = "http://127.0.0.1:{port}/dicom-web"\nbatch = 8\ninsecure = true\n'
        )
        # Receive with the destination held back (Orthanc paused), then time the drain.
        os.kill(proc.pid, 19)
        receiver = subprocess.Popen([str(tools["uplink"]), "serve", "--config", str(agent_dir / "uplink.toml")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(dicom_port, receiver)
        send(dicom_port, files, 1)
        start = time.time()
        os.kill(proc.pid, 18)
        while orthanc_count(port) < len(files):
            time.sleep(0.01)
        return time.time() - start
    finally:
        if receiver:
            receiver.terminate()
            receiver.wait()
        proc.terminate()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def upload_curl(work, files):
    """Seconds for curl to post `files` to Orthanc, 8 per multipart/related request."""
    proc, port, root = start_orthanc(work)
    try:
        bodies = []
        for i in range(0, len(files), 8):
            body = root / f"body-{i}.bin"
            with open(body, "wb") as out:
                for f in files[i:i + 8]:
                    out.write(b"--b0undary\r\nContent-Type: application/dicom\r\n\r\n")
                    out.write(f.read_bytes())
                    out.write(b"\r\n")
                out.write(b"--b0undary--\r\n")
            bodies.append(body)
        start = time.time()
        for body in bodies:
            sh("curl", "-sf", "-o", "/dev/null", "-X", "POST", "-T", str(body), "-H", "Expect:",
               "-H", 'Content-Type: multipart/related; type="application/dicom"; boundary=b0undary',
               f"http://127.0.0.1:{port}/dicom-web/studies")
        return time.time() - start
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def fmt(values, digits=0):
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clip-mib", type=int, default=1024)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.md"))
    parser.add_argument("--only", help="run only the corpus parts whose name contains this (e.g. JPEG)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="uplink-bench-"))
    try:
        tools = build_tools(work)
        corpus = make_corpus(work, args.clip_mib)
        receivers = ["uplink strict", "uplink identified", "dcmtk storescp +B", "dcmtk storescp",
                     "dcmtk storescp +B fsync", "dicom-rs storescp", "dcmtk storescp --ignore", LIMIT]
        lines = ["| corpus | assoc. | receiver | instances/s | MB/s | peak RSS MiB | CPU s | written / received | flushes / instance | MB/s ÷ uplink strict |",
                 "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        targets = []
        for part, files in corpus.items():
            if args.only and args.only not in part:
                continue
            size = sum(f.stat().st_size for f in files)
            for parallel in ([1, 4] if len(files) > 1 else [1]):
                results = {r: [] for r in receivers}
                for _ in range(args.rounds):
                    for name in receivers:
                        if name == LIMIT:
                            elapsed, flushes = limit_run(work, tools, files, parallel)
                            results[name].append((len(files) / elapsed, size / elapsed / 1e6, None, None, None,
                                                  flushes / len(files)))
                            continue
                        receiver = Receiver(name, work, tools)
                        flushes = device_flushes(work)
                        elapsed, failed = send(receiver.port, files, parallel)
                        flushes = device_flushes(work) - flushes
                        hwm, cpu, written = receiver.stop()
                        if failed:
                            results[name].append(None)
                            print(f"{name} failed on {part}: {failed[0]}", file=sys.stderr)
                            continue
                        results[name].append((len(files) / elapsed, size / elapsed / 1e6, hwm / 1024,
                                              cpu - receiver.base[1], (written - receiver.base[2]) / size,
                                              flushes / len(files)))
                ours = statistics.median(r[1] for r in results["uplink strict"] if r) if any(results["uplink strict"]) else None
                for name in receivers:
                    runs = [r for r in results[name] if r]
                    if not runs:
                        lines.append(f"| {part} | {parallel} | {name} | failed | | | | | |")
                        continue
                    col = lambda i: [r[i] for r in runs]
                    cell = lambda i, digits: fmt(col(i), digits) if runs[0][i] is not None else "—"
                    ratio = f"{statistics.median(col(1)) / ours:.2f}" if ours else ""
                    lines.append(f"| {part} | {parallel} | {name} | {fmt(col(0), 1)} | {fmt(col(1))} | {cell(2, 1)} | "
                                 f"{cell(3, 2)} | {cell(4, 2)} | {fmt(col(5), 2)} | {ratio} |")
                median = lambda name: statistics.median(r[1] for r in results[name] if r)
                if ours and all(any(results[n]) for n in ("dcmtk storescp +B fsync", LIMIT, "dcmtk storescp --ignore")):
                    targets.append(f"{part}, {parallel} association(s): uplink strict is "
                                   f"{ours / median('dcmtk storescp +B fsync'):.2f}× durable dcmtk +B, "
                                   f"{ours / median(LIMIT):.2f}× the machine limit and "
                                   f"{ours / median('dcmtk storescp --ignore'):.2f}× what storescu can send.")
        lines.append("")
        lines.extend(targets)
        if args.only:
            report = "\n".join(lines)
            print(report)
            Path(args.out).write_text(report + "\n")
            return
        # Idle RSS and start-up time of uplink.
        starts, idles = [], []
        for _ in range(args.rounds):
            receiver = Receiver("uplink strict", work, tools)
            starts.append((time.time() - receiver.started) * 1000)
            time.sleep(0.5)
            idles.append(receiver.stop()[0] / 1024)
        lines.append(f"uplink start-up to accepting connections: {fmt(starts)} ms; idle RSS {fmt(idles, 1)} MiB.")
        # Upload: the US images from uplink's queue into Orthanc's STOW-RS, against curl.
        images = corpus["US images"]
        size = sum(f.stat().st_size for f in images)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(size / upload_ours(work, tools, images) / 1e6)
            theirs.append(size / upload_curl(work, images) / 1e6)
        lines.append(f"Upload of the US images into Orthanc (STOW-RS, 8 per request): uplink {fmt(ours)} MB/s, "
                     f"curl {fmt(theirs)} MB/s, ratio {statistics.median(ours) / statistics.median(theirs):.2f}.")
        report = "\n".join(lines)
        print(report)
        Path(args.out).write_text(report + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
