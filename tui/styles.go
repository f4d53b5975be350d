package tui

import (
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// styles are built from the session's renderer, never lipgloss's default one: the default
// renderer inspects the server's own stdout, and adaptive colours would query it.
type styles struct {
	r         *lipgloss.Renderer
	header    lipgloss.Style
	tab       lipgloss.Style
	tabActive lipgloss.Style
	colHead   lipgloss.Style
	selected  lipgloss.Style
	dim       lipgloss.Style
	label     lipgloss.Style
	title     lipgloss.Style
	errText   lipgloss.Style
	okText    lipgloss.Style
	warnText  lipgloss.Style
	hintKey   lipgloss.Style
	hintText  lipgloss.Style
	plain     lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		r:         r,
		header:    r.NewStyle().Bold(true).Foreground(lipgloss.Color("15")).Background(lipgloss.Color("24")),
		tab:       r.NewStyle().Foreground(lipgloss.Color("245")),
		tabActive: r.NewStyle().Bold(true).Foreground(lipgloss.Color("214")),
		colHead:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("45")),
		selected:  r.NewStyle().Reverse(true),
		dim:       r.NewStyle().Foreground(lipgloss.Color("245")),
		label:     r.NewStyle().Foreground(lipgloss.Color("45")),
		title:     r.NewStyle().Bold(true).Foreground(lipgloss.Color("214")),
		errText:   r.NewStyle().Foreground(lipgloss.Color("203")),
		okText:    r.NewStyle().Foreground(lipgloss.Color("78")),
		warnText:  r.NewStyle().Foreground(lipgloss.Color("221")),
		hintKey:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("214")),
		hintText:  r.NewStyle().Foreground(lipgloss.Color("250")),
		plain:     r.NewStyle(),
	}
}

// state colours a status or state word.
func (s styles) state(v string) lipgloss.Style {
	switch v {
	case "running", "active", "succeeded", "success", "done", "yes", "rw":
		return s.okText
	case "error", "failed", "failure", "denied", "disabled", "expired", "inactive", "unavailable":
		return s.errText
	case "creating", "starting", "stopping", "rebuilding", "deleting", "queued", "pending":
		return s.warnText
	case "stopped", "-", "":
		return s.dim
	}
	return s.plain
}

// fit pads or truncates s (which may hold ANSI sequences) to exactly w cells.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	sw := ansi.StringWidth(s)
	if sw > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-sw)
}

// clip truncates s to at most w cells.
func clip(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if ansi.StringWidth(s) > w {
		return ansi.Truncate(s, w, "…")
	}
	return s
}
