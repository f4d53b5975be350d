package tui

import (
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// column describes one table column.
type column struct {
	title string
	min   int  // narrowest it may shrink to
	max   int  // widest it grows to (0: as wide as its content)
	flex  bool // shrinks first when the screen is narrow
	state bool // cells are status words, coloured by styles.state
}

// row is one line of a list: a stable key (the item id), its cells and the item itself.
type row struct {
	key   string
	cells []string
	item  any
}

const colGap = 2

// layout returns each column's width so the table fits width (including the two-cell
// cursor marker). Columns start at their natural width; flexible ones shrink first, then
// the others, never below their minimum.
func layout(cols []column, rows []row, width int) []int {
	w := make([]int, len(cols))
	for i, c := range cols {
		w[i] = ansi.StringWidth(c.title)
		for _, r := range rows {
			if i < len(r.cells) {
				if cw := ansi.StringWidth(r.cells[i]); cw > w[i] {
					w[i] = cw
				}
			}
		}
		if c.max > 0 && w[i] > c.max {
			w[i] = c.max
		}
		if w[i] < c.min {
			w[i] = c.min
		}
	}
	total := func() int {
		t := 2 + colGap*(len(cols)-1)
		for _, x := range w {
			t += x
		}
		return t
	}
	for _, flexFirst := range []bool{true, false} {
		for total() > width {
			// shrink the widest eligible column by one
			best := -1
			for i, c := range cols {
				if (c.flex == flexFirst) && w[i] > max(c.min, len(c.title)) && (best < 0 || w[i] > w[best]) {
					best = i
				}
			}
			if best < 0 {
				break
			}
			w[best]--
		}
	}
	return w
}

// renderTable draws the header and the visible rows [offset, offset+height-1) of a list.
func renderTable(st styles, cols []column, rows []row, widths []int, cursor, offset, height, width int) []string {
	out := make([]string, 0, height)
	var hb strings.Builder
	hb.WriteString("  ")
	for i, c := range cols {
		if i > 0 {
			hb.WriteString(strings.Repeat(" ", colGap))
		}
		hb.WriteString(fit(c.title, widths[i]))
	}
	out = append(out, st.colHead.Render(clip(strings.TrimRight(hb.String(), " "), width)))
	for i := offset; i < len(rows) && len(out) < height; i++ {
		r := rows[i]
		sel := i == cursor
		var b strings.Builder
		if sel {
			b.WriteString("> ")
		} else {
			b.WriteString("  ")
		}
		for j, c := range cols {
			if j > 0 {
				b.WriteString(strings.Repeat(" ", colGap))
			}
			cell := ""
			if j < len(r.cells) {
				cell = sanitize(r.cells[j])
			}
			cell = fit(cell, widths[j])
			if c.state && !sel {
				cell = st.state(strings.TrimSpace(cell)).Render(cell)
			}
			b.WriteString(cell)
		}
		line := clip(strings.TrimRight(b.String(), " "), width)
		if sel {
			line = st.selected.Render(fit(line, width))
		}
		out = append(out, line)
	}
	return out
}

// sanitize keeps control characters (from user-supplied names) out of the terminal.
func sanitize(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
