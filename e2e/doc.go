// Package e2e holds end-to-end tests that drive the real binary: they build cloud-cli-proxy
// with `go build`, run it as a separate process on a temporary data directory, talk to it
// over HTTP and signal it (SIGTERM, SIGKILL) the way an operator or a crash would. The
// package has no non-test code.
package e2e
