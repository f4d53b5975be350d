// Package api is the REST door of cloud-cli-proxy: the httprouter /v1 routes, their
// middleware (recovery, rate limit, body limit, authentication), the small scripts served to
// shells, and the VNC proxy entry points. Handlers only decode, call app.Service with the
// caller's Principal, and encode; every decision is app's.
package api
