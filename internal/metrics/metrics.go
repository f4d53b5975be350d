package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

const ns = "cloudcliproxy"

// Metrics holds the collectors of one process, registered on its own registry.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec
	sessionsOpen    *prometheus.GaugeVec
	sessionsTotal   *prometheus.CounterVec
	sessionsRefused *prometheus.CounterVec
	loginFailures   *prometheus.CounterVec
	tasksTotal      *prometheus.CounterVec
	taskDuration    *prometheus.HistogramVec
	egressChecks    *prometheus.CounterVec
	egressDuration  *prometheus.HistogramVec
	txDuration      *prometheus.HistogramVec
}

var _ app.Observer = (*Metrics)(nil)

// New builds the collectors on a new registry, with the Go runtime's and the process's.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total",
			Help: "REST requests answered, by method, route pattern and status."}, []string{"method", "route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
			Help: "Time to answer a REST request, by method, route pattern and status.", Buckets: prometheus.DefBuckets},
			[]string{"method", "route", "status"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rate_limited_total",
			Help: "Requests refused by the per-IP rate limit (429), by door."}, []string{"door"}),
		sessionsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "sessions_open",
			Help: "Sessions open now, by door (gateway, tui, api) and kind."}, []string{"door", "kind"}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sessions_total",
			Help: "Sessions opened, by door and kind."}, []string{"door", "kind"}),
		sessionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sessions_refused_total",
			Help: "Sessions refused, by door and reason."}, []string{"door", "reason"}),
		loginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "login_failures_total",
			Help: "Refused sign-ins, by door (api, ssh) and method."}, []string{"door", "method"}),
		tasksTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tasks_total",
			Help: "Tasks finished, by kind and state (succeeded, failed)."}, []string{"kind", "state"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "task_duration_seconds",
			Help:    "Time a finished task ran, by kind and state.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}}, []string{"kind", "state"}),
		egressChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "egress_checks_total",
			Help: "Runs of the egress checks, by source (host, test) and result (passed, failed, error)."}, []string{"source", "result"}),
		egressDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "egress_check_duration_seconds",
			Help:    "Time a run of the egress checks took, by source and result.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30}}, []string{"source", "result"}),
		txDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "db_transaction_duration_seconds",
			Help:    "Time of a database transaction (view or update, an update's batched commit and fsync included).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}}, []string{"kind"}),
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.rateLimited, m.sessionsOpen, m.sessionsTotal,
		m.sessionsRefused, m.loginFailures, m.tasksTotal, m.taskDuration, m.egressChecks, m.egressDuration,
		m.txDuration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry the collectors are on (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// HTTPRequest records one answered REST request.
func (m *Metrics) HTTPRequest(method, route string, status int, d time.Duration) {
	code := strconv.Itoa(status)
	m.httpRequests.WithLabelValues(method, route, code).Inc()
	m.httpDuration.WithLabelValues(method, route, code).Observe(d.Seconds())
}

// RateLimited records a request refused by the rate limit of a door.
func (m *Metrics) RateLimited(door string) { m.rateLimited.WithLabelValues(door).Inc() }

// SessionOpened implements app.Observer.
func (m *Metrics) SessionOpened(door, kind string) {
	m.sessionsOpen.WithLabelValues(door, kind).Inc()
	m.sessionsTotal.WithLabelValues(door, kind).Inc()
}

// SessionClosed implements app.Observer.
func (m *Metrics) SessionClosed(door, kind string) { m.sessionsOpen.WithLabelValues(door, kind).Dec() }

// SessionRefused implements app.Observer.
func (m *Metrics) SessionRefused(door, reason string) {
	m.sessionsRefused.WithLabelValues(door, reason).Inc()
}

// LoginFailed implements app.Observer.
func (m *Metrics) LoginFailed(door, method string) {
	m.loginFailures.WithLabelValues(door, method).Inc()
}

// TaskFinished implements app.Observer.
func (m *Metrics) TaskFinished(kind, state string, d time.Duration) {
	m.tasksTotal.WithLabelValues(kind, state).Inc()
	m.taskDuration.WithLabelValues(kind, state).Observe(d.Seconds())
}

// EgressChecked implements app.Observer.
func (m *Metrics) EgressChecked(source, result string, d time.Duration) {
	m.egressChecks.WithLabelValues(source, result).Inc()
	m.egressDuration.WithLabelValues(source, result).Observe(d.Seconds())
}

// StoreTx implements app.Observer.
func (m *Metrics) StoreTx(kind string, d time.Duration) {
	m.txDuration.WithLabelValues(kind).Observe(d.Seconds())
}

// State is what is read from the service when the metrics are scraped.
type State interface {
	MetricsState(ctx context.Context) (app.MetricsState, error)
}

// WatchState registers the collector that reads, at each scrape, the hosts by status, the
// queued and running tasks, the tunnel bytes per egress IP (from svc) and the database
// file's size (dbSize; nil: not reported).
func (m *Metrics) WatchState(svc State, dbSize func() (int64, error)) {
	m.reg.MustRegister(&stateCollector{svc: svc, dbSize: dbSize})
}

var (
	descHosts = prometheus.NewDesc(ns+"_hosts", "Hosts by status.", []string{"status"}, nil)
	descTasks = prometheus.NewDesc(ns+"_tasks", "Queued and running tasks, by kind and state.", []string{"kind", "state"}, nil)
	descRx    = prometheus.NewDesc(ns+"_tunnel_received_bytes_total",
		"Bytes received through the tunnels of an egress IP since they were attached.", []string{"egress_ip_id", "ip"}, nil)
	descTx = prometheus.NewDesc(ns+"_tunnel_sent_bytes_total",
		"Bytes sent through the tunnels of an egress IP since they were attached.", []string{"egress_ip_id", "ip"}, nil)
	descDBSize  = prometheus.NewDesc(ns+"_db_size_bytes", "Size of the database file.", nil, nil)
	descStateUp = prometheus.NewDesc(ns+"_state_scrape_ok", "1 when the service's state could be read at this scrape.", nil, nil)
)

type stateCollector struct {
	svc    State
	dbSize func() (int64, error)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHosts, descTasks, descRx, descTx, descDBSize, descStateUp} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.svc.MetricsState(ctx)
	ok := 1.0
	if err != nil {
		ok = 0
	} else {
		for status, n := range st.HostsByStatus {
			ch <- prometheus.MustNewConstMetric(descHosts, prometheus.GaugeValue, float64(n), string(status))
		}
		for _, t := range st.Tasks {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(t.Count), t.Kind, string(t.State))
		}
		for _, t := range st.Traffic {
			ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(t.RX), t.EgressIPID, t.IP)
			ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(t.TX), t.EgressIPID, t.IP)
		}
	}
	ch <- prometheus.MustNewConstMetric(descStateUp, prometheus.GaugeValue, ok)
	if c.dbSize != nil {
		if n, err := c.dbSize(); err == nil {
			ch <- prometheus.MustNewConstMetric(descDBSize, prometheus.GaugeValue, float64(n))
		}
	}
}
