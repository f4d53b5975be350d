package tui

import (
	"context"
	"errors"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// ErrUnknownView is returned by PrintTable for a name that is no list view.
var ErrUnknownView = errors.New("unknown view")

// TableNames lists the list views principal p has, by command name (hosts, users, …).
func TableNames(p app.Principal) []string {
	var out []string
	for _, v := range viewsFor(p) {
		if v.page == nil {
			out = append(out, v.cmd)
		}
	}
	return out
}

// PrintTable writes the rows of the named list view (a command name or alias, as with
// :name in the TUI) as a plain, untruncated table without colours: the command mode of the
// SSH door. The rows come from the same service calls as the TUI's; a view p does not have
// is asked of the service anyway, so the refusal is the service's.
func PrintTable(ctx context.Context, svc *app.Service, p app.Principal, name string, w io.Writer) error {
	m := &Model{svc: svc, p: p, ctx: ctx}
	spec := findView(viewsFor(p), name)
	if spec == nil {
		spec = findView(adminViews(), name)
	}
	if spec == nil || spec.page != nil {
		return ErrUnknownView
	}
	rows, err := spec.load(m)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	titles := make([]string, len(spec.columns))
	for i, c := range spec.columns {
		titles[i] = c.title
	}
	_, _ = io.WriteString(tw, strings.Join(titles, "\t")+"\n")
	for _, r := range rows {
		cells := make([]string, len(r.cells))
		for i, c := range r.cells {
			c = sanitize(c)
			if c == "" {
				c = "-"
			}
			cells[i] = strings.ReplaceAll(c, "\t", " ")
		}
		_, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\n")
	}
	return tw.Flush()
}

func findView(views []*viewSpec, name string) *viewSpec {
	name = strings.ToLower(strings.TrimSpace(name))
	for _, v := range views {
		if v.cmd == name {
			return v
		}
		for _, a := range v.aliases {
			if a == name {
				return v
			}
		}
	}
	return nil
}
