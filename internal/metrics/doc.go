// Package metrics is the process's Prometheus metrics: the collectors of the REST door
// (requests by route pattern and status, latencies, rate-limit refusals), of app (sessions
// by door, failed sign-ins, tasks, egress checks, store transactions: app.Observer) and the
// ones read when scraped (hosts by status, queued and running tasks, tunnel bytes per egress
// IP, the database's size). Nothing here is global: serve builds one Metrics on its own
// registry and hands it to app (app.Deps.Observer) and the REST door (api.Config.Metrics).
package metrics
