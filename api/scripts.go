package api

import (
	"bytes"
	"embed"
	"errors"
	"net/http"
	"strings"
	"text/template"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// The scripts GET /v1/bootstrap/script and GET /entry/:shortId serve are POSIX sh
// (shellcheck -s sh clean), rendered from scripts/*.sh.tmpl. Every value the server puts in
// a script goes through shellQuote, on a line of its own: VAR={{sq .Field}} (a test walks the
// templates and holds them to it).
//
//go:embed scripts/*.sh.tmpl
var scriptFS embed.FS

var scriptTemplates = template.Must(template.New("scripts").
	Funcs(template.FuncMap{"sq": shellQuoteChecked}).
	Option("missingkey=error").
	ParseFS(scriptFS, "scripts/*.sh.tmpl"))

// shellQuote returns s as one single-quoted word for sh and bash: inside '…' every byte
// stands for itself (", \, $, `, newlines included) except ' itself, written '\”. A NUL byte
// cannot be part of a shell word; shellQuote drops it (the templates use shellQuoteChecked,
// which refuses it instead).
func shellQuote(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellQuoteChecked(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("a shell word cannot hold a NUL byte")
	}
	return shellQuote(s), nil
}

// scriptData is what the script templates interpolate.
type scriptData struct {
	Base    string // the server's base URL, e.g. http://example.com:8080
	ShortID string // entry script: the host's short id
}

// renderScript renders the script template name ("bootstrap.sh.tmpl" or "entry.sh.tmpl").
func renderScript(name string, d scriptData) (string, error) {
	var b bytes.Buffer
	if err := scriptTemplates.ExecuteTemplate(&b, name, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request, name string, d scriptData) {
	body, err := renderScript(name, d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(body))
}

// kv is one line of a ?format=shell answer.
type kv struct{ k, v string }

// shellFormat reports whether r asks for the line format the served scripts read
// (?format=shell), and refuses formats it does not know.
func shellFormat(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		return false, nil
	case "shell":
		return true, nil
	default:
		return false, errBody(app.CodeInvalidFormat, "format must be json or shell, not %q", truncateRunes(f, 32))
	}
}

// writeShellLines writes a ?format=shell answer: text/plain, one KEY=VALUE line per field,
// meant to be read line by line (sed -n 's/^KEY=//p'), never evaluated. Control characters
// in a value become spaces, so each value stays on its line.
func writeShellLines(w http.ResponseWriter, status int, lines []kv) {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.k)
		b.WriteByte('=')
		b.WriteString(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, l.v))
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}
