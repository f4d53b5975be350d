// Package testenv is the test-support room: test support shared by the rooms' tests; never
// imported by production code.
//
// It holds what several packages' tests built each for themselves: an app.Service over a
// bbolt file in the test's temporary directory, with a settable clock and a logger that
// writes nowhere (NewService, Clock); an in-memory container engine (Runtime); and, for the
// tests that drive a whole server, a buffer safe for a server's writes and the test's reads
// (Buffer) and one JSON request over HTTP (DoJSON).
//
// testenv imports app and storage, so only tests outside package app (package app_test)
// and outside storage can use it.
package testenv
