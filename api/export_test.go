package api

import "text/template"

// Internals the external tests (package api_test) reach.
var (
	ShellQuote   = shellQuote
	RenderScript = func(name, base, shortID string) (string, error) {
		return renderScript(name, scriptData{Base: base, ShortID: shortID})
	}
	ScriptTemplates = func() *template.Template { return scriptTemplates }
)
