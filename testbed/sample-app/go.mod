// The sample application of the test bed's node tests and `make demo`.
module pod-reloader/testbed/sample-app

go 1.26
