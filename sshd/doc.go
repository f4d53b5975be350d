// Package sshd is the SSH room: two wish servers sharing one persistent ed25519 host key.
// The TUI door (SSH_ADDR) runs the bubbletea UI of package tui for admins, viewers and users;
// the gateway (SSH_PROXY_PORT) bridges a user's SSH session into their own container through
// the engine's exec API. Both authenticate and authorize through app.Service.
package sshd
