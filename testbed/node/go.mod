// Small helpers of the test bed's node (testbed/node/node.sh); standard
// library only, built with CGO_ENABLED=0 into static binaries.
module pod-reloader/testbed/node

go 1.26
