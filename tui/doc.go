// Package tui is the terminal UI room: a bubbletea model, in k9s habits, that the SSH door
// (package sshd) runs for every PTY session. Admins get Dashboard, Users, Hosts, Egress IPs,
// Bindings, Access Tokens, Tasks and Events; viewers the same views read-only; users their
// own hosts (enter connects), SSH keys, access tokens and password.
//
// The TUI is a door like the REST API: every read and every change is a call on
// app.Service with the session's app.Principal, and every refusal, validation message and
// audit record comes from there. The model decides nothing itself; it only hides the hints
// of changes that Principal.CanWrite says the caller cannot make.
//
// views.go holds what a view is (viewSpec, action); each view lives in its own file, as in
// k9s's internal/view: dashboard.go, users.go, hosts.go (with ownhosts.go, a user's own),
// egress.go, bindings.go, tokens.go, tasks.go, events.go, keys.go, password.go. The
// screens that show them are in screens.go, forms in form.go, shared formatting in
// helpers.go.
package tui
