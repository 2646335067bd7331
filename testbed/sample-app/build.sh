#!/usr/bin/env bash
# Builds the sample application (main.go, a static Go binary) and its OCI
# image archive, testbed.local/sample-app:1, for the test bed's node:
#
#   testbed/sample-app/build.sh OUT_DIR    -> OUT_DIR/sample-app, OUT_DIR/sample-app.tar
#
# Prints the image reference and the manifest digest. The image holds only
# /sample-app (entrypoint), runs as 65534:65534 and prints GREETING by default
# (the container's args name the variables to print).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
(cd "$here" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/sample-app" .)
ref=testbed.local/sample-app:1
digest=$(python3 "$here/../node/oci-image.py" --name "$ref" --out "$out/sample-app.tar" \
  --file "$out/sample-app:/sample-app:0755" --entrypoint '["/sample-app"]' --cmd '["GREETING"]' --user 65534:65534)
echo "$ref $digest"
