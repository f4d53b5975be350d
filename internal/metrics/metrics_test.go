package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

type fakeState struct {
	st  app.MetricsState
	err error
}

func (f fakeState) MetricsState(context.Context) (app.MetricsState, error) { return f.st, f.err }

func TestObserverAndState(t *testing.T) {
	m := New()
	m.SessionOpened("gateway", "shell")
	m.SessionOpened("gateway", "shell")
	m.SessionClosed("gateway", "shell")
	m.SessionRefused("gateway", "limit")
	m.TaskFinished("host.start", "failed", 2*time.Second)
	m.EgressChecked("host", "passed", 300*time.Millisecond)
	m.StoreTx("update", time.Millisecond)
	m.WatchState(fakeState{st: app.MetricsState{
		HostsByStatus: map[app.HostState]int{app.HostRunning: 2},
		Tasks:         []app.TaskCount{{Kind: "host.create", State: app.TaskQueued, Count: 3}},
		Traffic:       []app.EgressTraffic{{EgressIPID: "eg-1", IP: "203.0.113.10", RX: 100, TX: 50}},
	}}, func() (int64, error) { return 4096, nil })

	want := `
# HELP cloudcliproxy_sessions_open Sessions open now, by door (gateway, tui, api) and kind.
# TYPE cloudcliproxy_sessions_open gauge
cloudcliproxy_sessions_open{door="gateway",kind="shell"} 1
# HELP cloudcliproxy_sessions_total Sessions opened, by door and kind.
# TYPE cloudcliproxy_sessions_total counter
cloudcliproxy_sessions_total{door="gateway",kind="shell"} 2
# HELP cloudcliproxy_hosts Hosts by status.
# TYPE cloudcliproxy_hosts gauge
cloudcliproxy_hosts{status="running"} 2
# HELP cloudcliproxy_tasks Queued and running tasks, by kind and state.
# TYPE cloudcliproxy_tasks gauge
cloudcliproxy_tasks{kind="host.create",state="queued"} 3
# HELP cloudcliproxy_tunnel_received_bytes_total Bytes received through the tunnels of an egress IP since they were attached.
# TYPE cloudcliproxy_tunnel_received_bytes_total counter
cloudcliproxy_tunnel_received_bytes_total{egress_ip_id="eg-1",ip="203.0.113.10"} 100
# HELP cloudcliproxy_db_size_bytes Size of the database file.
# TYPE cloudcliproxy_db_size_bytes gauge
cloudcliproxy_db_size_bytes 4096
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "cloudcliproxy_sessions_open",
		"cloudcliproxy_sessions_total", "cloudcliproxy_hosts", "cloudcliproxy_tasks",
		"cloudcliproxy_tunnel_received_bytes_total", "cloudcliproxy_db_size_bytes"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(m.sessionsRefused.WithLabelValues("gateway", "limit")); n != 1 {
		t.Errorf("refused = %v", n)
	}
	if n := testutil.CollectAndCount(m.taskDuration); n != 1 {
		t.Errorf("task duration series = %d", n)
	}
}

func TestStateErrorIsReported(t *testing.T) {
	m := New()
	m.WatchState(fakeState{err: errors.New("database closed")}, nil)
	want := `
# HELP cloudcliproxy_state_scrape_ok 1 when the service's state could be read at this scrape.
# TYPE cloudcliproxy_state_scrape_ok gauge
cloudcliproxy_state_scrape_ok 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "cloudcliproxy_state_scrape_ok"); err != nil {
		t.Error(err)
	}
}
