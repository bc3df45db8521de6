# Shared by the bench scripts: a free loopback port, and Orthanc with its DICOMweb
# plugin started on one (sets $orthanc to its pid; the caller kills it).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_orthanc DIR HTTP_PORT: storage in DIR, returns once it answers.
start_orthanc() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat > "$dir/orthanc.json" <<JSON
{"Name": "bench", "StorageDirectory": "$dir/db", "IndexDirectory": "$dir/db",
 "HttpPort": $port, "DicomServerEnabled": false, "RemoteAccessAllowed": false,
 "AuthenticationEnabled": false, "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}}
JSON
  Orthanc "$dir/orthanc.json" >"$dir/orthanc.log" 2>&1 &
  orthanc=$!
  until curl -sf "http://127.0.0.1:$port/system" >/dev/null; do sleep 0.05; done
}
