// Package app is the service room of cloud-cli-proxy: every operation the product offers,
// its validation, its authorization and its audit record live here, once.
//
// The three doors (api for REST, tui and sshd for SSH) are thin: they turn a request into
// a call on *Service with the caller's Principal and render what comes back. Nothing outside
// this package decides who may do what.
//
// app depends only on interfaces: Store (storage/ implements it on bbolt), Runtime
// (runtime/ implements it on the Docker engine) and Tunnel (tunnel/). Server start-up wires
// the real ones.
package app
