package app

import (
	"context"
	"time"
)

// ListEvents answers an audit query from the store's indexes.
func (s *Service) ListEvents(ctx context.Context, p Principal, q EventQuery) (EventPage, error) {
	if err := s.requireAdminRead(p); err != nil {
		return EventPage{}, err
	}
	if err := checkLimit(q.Limit, MaxEventLimit); err != nil {
		return EventPage{}, err
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return EventPage{}, invalid("until", "until must not be before since")
	}
	var page EventPage
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		page, err = tx.QueryEvents(q)
		return err
	})
	if page.Events == nil {
		page.Events = []Event{}
	}
	return page, err
}

// Stats is the dashboard's summary.
type Stats struct {
	Users struct {
		Total    int `json:"total"`
		Active   int `json:"active"`
		Disabled int `json:"disabled"`
		Expired  int `json:"expired"`
	} `json:"users"`
	Hosts struct {
		Total    int               `json:"total"`
		ByStatus map[HostState]int `json:"by_status"`
	} `json:"hosts"`
	EgressIPs struct {
		Total int `json:"total"`
		Bound int `json:"bound"`
	} `json:"egress_ips"`
	Bindings int `json:"bindings"`
	Tasks    struct {
		Queued  int `json:"queued"`
		Running int `json:"running"`
	} `json:"tasks"`
	Events24h int `json:"events_24h"`
}

// DashboardStats summarises the system.
func (s *Service) DashboardStats(ctx context.Context, p Principal) (Stats, error) {
	if err := s.requireAdminRead(p); err != nil {
		return Stats{}, err
	}
	var st Stats
	st.Hosts.ByStatus = map[HostState]int{}
	err := s.store.View(ctx, func(tx Tx) error {
		us, err := tx.ListUsers()
		if err != nil {
			return err
		}
		for _, u := range us {
			st.Users.Total++
			switch u.Status {
			case UserActive:
				st.Users.Active++
			case UserDisabled:
				st.Users.Disabled++
			case UserExpired:
				st.Users.Expired++
			}
		}
		hs, err := tx.ListHosts()
		if err != nil {
			return err
		}
		for _, h := range hs {
			st.Hosts.Total++
			st.Hosts.ByStatus[h.Status]++
		}
		es, err := tx.ListEgress()
		if err != nil {
			return err
		}
		bs, err := tx.ListBindings()
		if err != nil {
			return err
		}
		bound := map[string]bool{}
		for _, b := range bs {
			bound[b.EgressIPID] = true
		}
		st.EgressIPs.Total, st.EgressIPs.Bound, st.Bindings = len(es), len(bound), len(bs)
		ts, err := tx.ListTasksByState(TaskQueued, TaskRunning)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.State == TaskQueued {
				st.Tasks.Queued++
			} else {
				st.Tasks.Running++
			}
		}
		st.Events24h, err = tx.CountEventsSince(s.Now().Add(-24 * time.Hour))
		return err
	})
	return st, err
}

// Health is the answer of /healthz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Health checks the database and the container engine. OK is false only when the database
// is unusable; an engine that is down degrades the status. The engine's check is "agent"
// (the API reference's name) and, the same, "docker".
func (s *Service) Health(ctx context.Context) (Health, bool) {
	h := Health{Status: "ok", Checks: map[string]string{"database": "ok", "agent": "ok", "docker": "ok"}}
	ok := true
	if err := s.store.Check(ctx); err != nil {
		h.Checks["database"] = "error: " + err.Error()
		h.Status, ok = "error", false
	}
	if err := s.runtime.Ping(ctx); err != nil {
		h.Checks["agent"] = "error: " + AsError(err).Message
		h.Checks["docker"] = h.Checks["agent"]
		if ok {
			h.Status = "degraded"
		}
	}
	return h, ok
}
