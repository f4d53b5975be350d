// Package cmd is the command-line room: configuration (flags, environment, env file), the
// `serve` command that wires the real store, runtime and doors together, and admin chores
// such as `backup`.
package cmd
