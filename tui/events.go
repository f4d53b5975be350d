package tui

import (
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func eventColumns() []column {
	return []column{{title: "TIME", min: 10, max: 19}, {title: "TYPE", min: 8, max: 24, flex: true},
		{title: "RESULT", min: 7, state: true}, {title: "ACTOR", min: 5, max: 16, flex: true},
		{title: "MESSAGE", min: 20, max: 60, flex: true}}
}

func eventRows(evs []app.Event) []row {
	rows := make([]row, 0, len(evs))
	for _, e := range evs {
		actor := e.ActorName
		if actor == "" {
			actor = short(e.ActorID)
		}
		rows = append(rows, row{key: e.ID, item: e, cells: []string{e.Time.UTC().Format(secondsLayout), e.Action,
			e.Result, dash(actor), e.Message}})
	}
	return rows
}

func eventsView() *viewSpec {
	return &viewSpec{name: "Events", cmd: "events", aliases: []string{"event", "audit", "ev"},
		columns: eventColumns(),
		load: func(m *Model) ([]row, error) {
			page, err := m.svc.ListEvents(m.ctx, m.p, app.EventQuery{Limit: 500})
			if err != nil {
				return nil, err
			}
			return eventRows(page.Events), nil
		},
		detail: func(m *Model, r row) []string {
			e := r.item.(app.Event)
			return []string{m.kv("ID", e.ID), m.kv("Time", e.Time.UTC().Format(time.RFC3339Nano)), m.kv("Type", e.Action),
				m.kv("Result", e.Result), m.kv("Actor", dash(e.ActorName)+" "+e.ActorID), m.kv("Auth method", dash(e.AuthMethod)),
				m.kv("Token", dash(e.TokenName)+" "+e.TokenID), m.kv("Source IP", dash(e.SourceIP)),
				m.kv("Target", dash(e.TargetType)+" "+e.TargetID), m.kv("User", dash(e.UserID)), m.kv("Host", dash(e.HostID)),
				m.kv("Message", dash(e.Message))}
		},
	}
}
