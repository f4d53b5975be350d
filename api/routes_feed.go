package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// registerFeedRoutes serves the change feed (app/feed.go) as Server-Sent Events:
//
//   - audit items carry "id: <event id>", so a client that reconnects with Last-Event-ID
//     (or ?last_event_id=, for an EventSource's first connection) gets the stored events
//     written after it, then the live ones, without loss or duplicates;
//   - task, host and egress-check items carry no id (the client's Last-Event-ID stays its
//     last audit event) and are not replayed;
//   - filters type, host_id and (admins) user_id are those of the events list; the user
//     stream only ever carries items whose user_id is the caller's;
//   - an idle stream gets a ": heartbeat" comment every 15 s;
//   - the stream ends with an "end" event {"reason","resync"} when the credential ends
//     (revoked token, logout, disabled account, …) or the subscriber fell behind
//     (resync true: reconnect with Last-Event-ID); the stream is a session app keeps
//     (kind feed), so it ends the moment its credential does;
//   - ?once=1 closes the stream after the replay (a catch-up poll; also what tests use).
func (s *Server) registerFeedRoutes() {
	s.handle("GET", "/v1/admin/events/stream", accessAdminRead, s.authed(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, p app.Principal) {
		q := feedQuery(r, true)
		f, err := s.svc.AdminFeed(r.Context(), p, q)
		s.serveFeed(w, r, f, err)
	}))
	s.handle("GET", "/v1/user/events/stream", accessAuth, s.authed(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params, p app.Principal) {
		q := feedQuery(r, false)
		f, err := s.svc.UserFeed(r.Context(), p, q)
		s.serveFeed(w, r, f, err)
	}))
}

func feedQuery(r *http.Request, admin bool) app.FeedQuery {
	v := r.URL.Query()
	q := app.FeedQuery{FeedFilter: app.FeedFilter{Type: v.Get("type"), HostID: v.Get("host_id")}}
	if admin {
		q.UserID = v.Get("user_id")
	}
	q.After = strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if q.After == "" {
		q.After = v.Get("last_event_id")
	}
	return q
}

// feedEnd is the data of the stream's last event.
type feedEnd struct {
	Reason string `json:"reason"`
	Resync bool   `json:"resync"`
}

func (s *Server) serveFeed(w http.ResponseWriter, r *http.Request, f *app.Feed, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.Close()
	once := r.URL.Query().Get("once") == "1" || r.URL.Query().Get("once") == "true"
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives any server write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": change feed\n\n"); err != nil {
		return
	}
	_ = rc.Flush()

	every := s.cfg.FeedHeartbeat
	if every <= 0 {
		every = 15 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var buf strings.Builder
	for {
		if once && !f.Replaying() {
			return
		}
		it, ok, err := f.Next(r.Context(), tick.C)
		buf.Reset()
		switch {
		case err != nil:
			end, isEnd := err.(*app.FeedEnded)
			if !isEnd {
				return // the client went away
			}
			data, _ := json.Marshal(feedEnd{Reason: end.Reason, Resync: end.Behind})
			fmt.Fprintf(&buf, "event: end\ndata: %s\n\n", data)
		case !ok:
			buf.WriteString(": heartbeat\n\n")
		default:
			data, err := json.Marshal(it)
			if err != nil {
				s.log.Error("change feed: encode item", "err", err)
				continue
			}
			if it.ID != "" {
				fmt.Fprintf(&buf, "id: %s\n", it.ID)
			}
			fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", it.Kind, data)
		}
		if _, werr := w.Write([]byte(buf.String())); werr != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		if err != nil {
			return
		}
		if ok {
			tick.Reset(every)
		}
	}
}
