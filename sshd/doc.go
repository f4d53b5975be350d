// Package sshd is the SSH room: two wish servers sharing one persistent ed25519 host key.
// The TUI door (SSH_ADDR) runs the bubbletea UI of package tui for admins, viewers and users;
// the gateway (SSH_PROXY_PORT) bridges a user's SSH session into their own container through
// the engine's exec API; in the door, enter on one of a user's hosts opens that host's shell
// in the same session through the gateway's bridge (Gateway.Shell as DoorConfig.Connect),
// and the TUI comes back when the shell exits. Both authenticate and authorize through
// app.Service.
package sshd
