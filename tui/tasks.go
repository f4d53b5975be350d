package tui

import (
	"fmt"
	"sort"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func tasksView() *viewSpec {
	return &viewSpec{name: "Tasks", cmd: "tasks", aliases: []string{"task"},
		columns: []column{{title: "CREATED", min: 14}, {title: "KIND", min: 8, max: 24, flex: true},
			{title: "STATE", min: 9, state: true}, {title: "HOST", min: 8}, {title: "USER", min: 5, max: 16, flex: true},
			{title: "PROGRESS", min: 20, max: 50, flex: true}},
		load: func(m *Model) ([]row, error) {
			ts, err := m.svc.ListTasks(m.ctx, m.p, app.TaskFilter{Limit: 200})
			if err != nil {
				return nil, err
			}
			hs, err := m.svc.ListHosts(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			us, err := m.svc.ListUsers(m.ctx, m.p)
			if err != nil {
				return nil, err
			}
			hosts, users := map[string]string{}, map[string]string{}
			for _, h := range hs {
				hosts[h.ID] = h.ShortID
			}
			for _, u := range us {
				users[u.ID] = u.Username
			}
			sort.SliceStable(ts, func(i, j int) bool { return ts[i].CreatedAt.After(ts[j].CreatedAt) })
			rows := make([]row, 0, len(ts))
			for _, t := range ts {
				h := hosts[t.HostID]
				if h == "" {
					h = short(t.HostID)
				}
				rows = append(rows, row{key: t.ID, item: t, cells: []string{t.CreatedAt.UTC().Format("01-02 15:04:05"),
					t.Kind, t.State.String(), dash(h), dash(users[t.UserID]), taskProgress(t)}})
			}
			return rows, nil
		},
		detail: func(m *Model, r row) []string {
			t := r.item.(app.Task)
			out := []string{m.kv("Host", dash(r.cells[3])), m.kv("User", dash(r.cells[4])),
				m.kv("Created", fmtTime(t.CreatedAt)), m.kv("Started", fmtTimeP(t.StartedAt, "-")),
				m.kv("Finished", fmtTimeP(t.FinishedAt, "-"))}
			return append(out, taskLines(m, t)...)
		},
		live: func([]row) bool { return true },
		liveItem: func(_ *Model, r row) bool {
			t := r.item.(app.Task)
			return t.State == app.TaskQueued || t.State == app.TaskRunning
		},
	}
}

func taskProgress(t app.Task) string {
	if t.Error != nil {
		return t.Error.Message
	}
	if len(t.Steps) == 0 {
		return "-"
	}
	done := 0
	for _, s := range t.Steps {
		if s.State == "done" {
			done++
		}
	}
	last := t.Steps[len(t.Steps)-1]
	return fmt.Sprintf("%d/%d %s", done, len(t.Steps), last.Name)
}

func taskLines(m *Model, t app.Task) []string {
	out := []string{m.kv("Task", t.ID), m.kv("Kind", t.Kind), m.kvStyled("State", m.st.state(t.State.String()).Render(t.State.String()))}
	if t.Error != nil {
		out = append(out, m.kvStyled("Error", m.st.errText.Render(sanitize(t.Error.Code.String()+": "+t.Error.Message))))
	}
	if len(t.Steps) == 0 && (t.State == app.TaskQueued || t.State == app.TaskRunning) {
		out = append(out, m.st.dim.Render("  waiting for a worker…"))
	}
	for i, s := range t.Steps {
		mark := map[string]string{"done": "✓", "failed": "✗", "running": "…"}[s.State]
		if mark == "" {
			mark = " "
		}
		line := fmt.Sprintf("  %s %d. %s", mark, i+1, sanitize(s.Name))
		if s.End != nil {
			line += m.st.dim.Render(fmt.Sprintf(" (%s)", s.End.Sub(s.At).Round(time.Millisecond)))
		}
		out = append(out, m.st.state(s.State).Render(line))
	}
	return out
}
