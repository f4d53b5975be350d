package app

import (
	"context"
	"sort"
	"time"
)

// Observer is told what the service does, as it happens, for the metrics of the process
// (the metrics package implements it). Its methods must be cheap and must not block: they
// run on the paths they describe. Deps.Observer nil means nobody listens.
type Observer interface {
	// SessionOpened and SessionClosed bracket a registered session; door is "gateway",
	// "tui" or "api" (SessionDoor), kind the session's kind.
	SessionOpened(door, kind string)
	SessionClosed(door, kind string)
	// SessionRefused is a session a door asked for and app refused; reason is a short
	// token ("limit", "access_denied", "no_host", "host_not_ready", "attach_failed").
	SessionRefused(door, reason string)
	// LoginFailed is a refused sign-in: door "api" or "ssh", method what was tried
	// ("password", "jwt", "token", "ssh").
	LoginFailed(door, method string)
	// TaskFinished is a task that ended in state (succeeded or failed) after running d.
	TaskFinished(kind, state string, d time.Duration)
	// EgressChecked is one run of the egress checks: source "host" (from inside a
	// container) or "test" (POST …/test); result "passed", "failed" or "error".
	EgressChecked(source, result string, d time.Duration)
	// StoreTx is one store transaction ("view" or "update") that took d.
	StoreTx(kind string, d time.Duration)
}

// nopObserver listens to nothing.
type nopObserver struct{}

func (nopObserver) SessionOpened(string, string)                {}
func (nopObserver) SessionClosed(string, string)                {}
func (nopObserver) SessionRefused(string, string)               {}
func (nopObserver) LoginFailed(string, string)                  {}
func (nopObserver) TaskFinished(string, string, time.Duration)  {}
func (nopObserver) EgressChecked(string, string, time.Duration) {}
func (nopObserver) StoreTx(string, time.Duration)               {}

// SessionDoor is the door a session of kind came through: the gateway's channels run on
// an SSH connection (connID set), the TUI door's shells do not, desktops are the REST door's.
func SessionDoor(kind SessionKind, connID string) string {
	switch kind {
	case SessionSSHConn, SessionForward:
		return "gateway"
	case SessionTUI:
		return "tui"
	case SessionVNC, SessionFeed:
		return "api"
	}
	if connID != "" {
		return "gateway"
	}
	return "tui"
}

// refused tells the observer that a session of kind was refused for reason.
func (s *Service) refused(kind SessionKind, connID, reason string) {
	s.obs.SessionRefused(SessionDoor(kind, connID), reason)
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the id of the request being served (the REST door's
// X-Request-Id): every audit event written under it records the id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom is the request id ctx carries, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// observedStore is the store as the service uses it: it times every transaction for the
// observer, stamps the request id of the context on the audit events written in it, and
// publishes what a write transaction changed to the change feed once it commits (in commit
// order: feed.commit is held across the transaction and the publication).
type observedStore struct {
	Store
	obs  Observer
	feed *feedBroker
}

func (o observedStore) View(ctx context.Context, fn func(Tx) error) error {
	start := time.Now()
	err := o.Store.View(ctx, fn)
	o.obs.StoreTx("view", time.Since(start))
	return err
}

func (o observedStore) Update(ctx context.Context, fn func(Tx) error) error {
	start := time.Now()
	id := RequestIDFrom(ctx)
	var items []FeedItem
	inner := func(tx Tx) error {
		items = items[:0] // a store may run fn again
		return fn(feedTx{Tx: tx, reqID: id, items: &items})
	}
	o.feed.commit.Lock()
	err := o.Store.Update(ctx, inner)
	if err == nil {
		o.feed.publish(items)
	}
	o.feed.commit.Unlock()
	o.obs.StoreTx("update", time.Since(start))
	return err
}

// checkResult is the observer's word for the outcome of the egress checks.
func checkResult(res EgressTestResult, err error) string {
	switch {
	case err != nil:
		return "error"
	case !res.OK:
		return "failed"
	}
	return "passed"
}

// MetricsState is what the metrics read from the service when they are scraped.
type MetricsState struct {
	HostsByStatus map[HostState]int
	// Tasks counts the queued and running tasks by kind and state.
	Tasks []TaskCount
	// Traffic is the bytes through the attached tunnels of each bound egress IP.
	Traffic []EgressTraffic
}

// TaskCount is how many tasks of a kind are in a state.
type TaskCount struct {
	Kind  string
	State TaskState
	Count int
}

// EgressTraffic is the bytes received and sent through the attached tunnels of the hosts
// bound to an egress IP (Tunnel.Traffic, counted since each was attached).
type EgressTraffic struct {
	EgressIPID string
	IP         string
	RX, TX     uint64
}

// MetricsState reads the hosts by status, the queued and running tasks and the tunnel
// traffic per egress IP, in one read transaction (for the metrics; no principal: the
// metrics endpoint is guarded by its door).
func (s *Service) MetricsState(ctx context.Context) (MetricsState, error) {
	st := MetricsState{HostsByStatus: map[HostState]int{}}
	var binds []Binding
	ips := map[string]string{}
	err := s.store.View(ctx, func(tx Tx) error {
		hs, err := tx.ListHosts()
		if err != nil {
			return err
		}
		for _, h := range hs {
			st.HostsByStatus[h.Status]++
		}
		ts, err := tx.ListTasksByState(TaskQueued, TaskRunning)
		if err != nil {
			return err
		}
		counts := map[TaskCount]int{}
		for _, t := range ts {
			counts[TaskCount{Kind: t.Kind, State: t.State}]++
		}
		for k, n := range counts {
			k.Count = n
			st.Tasks = append(st.Tasks, k)
		}
		if binds, err = tx.ListBindings(); err != nil {
			return err
		}
		es, err := tx.ListEgress()
		for _, e := range es {
			ips[e.ID] = e.IPAddress
		}
		return err
	})
	if err != nil {
		return MetricsState{}, err
	}
	if s.noTunnel {
		return st, nil
	}
	by := map[string]*EgressTraffic{}
	for _, b := range binds {
		rx, tx, ok := s.tunnel.Traffic(b.HostID)
		if !ok {
			continue
		}
		t := by[b.EgressIPID]
		if t == nil {
			t = &EgressTraffic{EgressIPID: b.EgressIPID, IP: ips[b.EgressIPID]}
			by[b.EgressIPID] = t
		}
		t.RX += rx
		t.TX += tx
	}
	for _, t := range by {
		st.Traffic = append(st.Traffic, *t)
	}
	sort.Slice(st.Traffic, func(i, j int) bool { return st.Traffic[i].EgressIPID < st.Traffic[j].EgressIPID })
	return st, nil
}

// ConnectionRefused tells the observer that a door refused a connection before it could
// authenticate (door "gateway" or "tui"; reason e.g. "unauthenticated_per_ip").
func (s *Service) ConnectionRefused(door, reason string) { s.obs.SessionRefused(door, reason) }
