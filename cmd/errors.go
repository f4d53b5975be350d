package cmd

import (
	"fmt"
	"io"
	"strconv"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// ErrorsCommand prints the error-code table of the README (app.ErrorCodes).
func ErrorsCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("errors", "errors\n\nPrints every error code the server answers with (Markdown table, as in the README).", stderr)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	fmt.Fprint(stdout, ErrorTable())
	return nil
}

// ErrorTable is the README's "Error codes" table, generated from app.ErrorCodes.
func ErrorTable() string {
	out := "| Code | HTTP status | Meaning |\n|---|---|---|\n"
	for _, c := range app.ErrorCodes() {
		status := "—"
		if c.Status != 0 {
			status = strconv.Itoa(c.Status)
		}
		out += fmt.Sprintf("| `%s` | %s | %s |\n", c.Code, status, c.Meaning)
	}
	return out
}
