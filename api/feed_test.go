package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
	"github.com/cloud-cli-proxy/cloud-cli-proxy/internal/testenv"
)

// sseEvent is one event of a change-feed stream.
type sseEvent struct {
	ID, Event string
	Item      app.FeedItem
	Data      string
}

type sseStream struct {
	t      *testing.T
	cancel context.CancelFunc
	resp   *http.Response
	events chan sseEvent
}

// openFeed opens a stream and reads its events in the background.
func (e *env) openFeed(path, bearer, lastID string) *sseStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{t: e.t, cancel: cancel, resp: resp, events: make(chan sseEvent, 4096)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" {
					if ev.Event != "end" {
						_ = json.Unmarshal([]byte(ev.Data), &ev.Item)
					}
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data = line[6:]
			}
		}
	}()
	e.t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() { s.cancel(); s.resp.Body.Close() }

// next is the next event, failing after d.
func (s *sseStream) next(d time.Duration) sseEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("stream ended")
		}
		return ev
	case <-time.After(d):
		s.t.Fatalf("no event within %s", d)
	}
	return sseEvent{}
}

// quiet fails when an event arrives within d.
func (s *sseStream) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			s.t.Fatalf("unexpected event %s %s", ev.Event, ev.Data)
		}
	case <-time.After(d):
	}
}

func TestFeedTaskProgressInOrder(t *testing.T) {
	e := newEnv(t, withRuntime(&testenv.Runtime{}))
	uid, _ := e.user("feed-tasks", app.RoleUser)
	s := e.openFeed("/v1/admin/events/stream?type=task.progress&user_id="+uid, e.admin, "")
	hostID := e.host(uid)
	var seen []app.Task
	for {
		ev := s.next(10 * time.Second)
		if ev.Event != "task" || ev.ID != "" || ev.Item.Task == nil || ev.Item.HostID != hostID {
			t.Fatalf("unexpected item %+v", ev)
		}
		seen = append(seen, *ev.Item.Task)
		if st := ev.Item.Task.State; st == app.TaskSucceeded || st == app.TaskFailed {
			break
		}
	}
	final := e.waitTask(seen[0].ID)
	if final.State != app.TaskSucceeded {
		t.Fatalf("task %+v", final)
	}
	// Each item is a later view than the one before: steps only grow, a step's state only
	// moves on from running, and the last item is the finished task.
	for i := 1; i < len(seen); i++ {
		prev, cur := seen[i-1], seen[i]
		if len(cur.Steps) < len(prev.Steps) {
			t.Fatalf("item %d has %d steps after %d", i, len(cur.Steps), len(prev.Steps))
		}
		for j, st := range prev.Steps {
			if cur.Steps[j].Name != st.Name || st.State != "running" && cur.Steps[j].State != st.State {
				t.Fatalf("item %d step %d went from %+v to %+v", i, j, st, cur.Steps[j])
			}
		}
	}
	last := seen[len(seen)-1]
	if len(last.Steps) != len(final.Steps) || len(final.Steps) == 0 {
		t.Fatalf("last item has %d steps, the task %d", len(last.Steps), len(final.Steps))
	}
	// Every step was seen running and then done: 2 saves a step, plus the state changes.
	if len(seen) < 2*len(final.Steps) {
		t.Fatalf("%d items for %d steps", len(seen), len(final.Steps))
	}
}

func TestFeedResumesWithLastEventID(t *testing.T) {
	e := newEnv(t)
	const path = "/v1/admin/events/stream?type=user.create"
	mk := func(n int) string {
		name := fmt.Sprintf("feed-resume-%d", n)
		e.do("POST", "/v1/admin/users", e.admin, map[string]any{"username": name, "password": "password-" + name}, 201, nil)
		return name
	}
	var want, got []string
	seenID := map[string]bool{}
	take := func(s *sseStream) string {
		ev := s.next(5 * time.Second)
		if ev.Event != "audit" || ev.ID == "" || ev.ID != ev.Item.ID || ev.Item.Event == nil {
			t.Fatalf("unexpected item %+v", ev)
		}
		if seenID[ev.ID] {
			t.Fatalf("event %s delivered twice", ev.ID)
		}
		seenID[ev.ID] = true
		got = append(got, strings.TrimSuffix(ev.Item.Event.Message, ""))
		return ev.ID
	}
	s := e.openFeed(path, e.admin, "")
	var last string
	for i := 0; i < 3; i++ {
		want = append(want, mk(i))
		last = take(s)
	}
	s.close() // the connection drops
	for i := 3; i < 6; i++ {
		want = append(want, mk(i)) // written while nobody listens
	}
	s = e.openFeed(path, e.admin, last)
	for i := 3; i < 6; i++ {
		take(s)
	}
	want = append(want, mk(6)) // live again
	last = take(s)
	s.quiet(100 * time.Millisecond)
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Fatalf("event %d is %q, want one naming %s (all: %q)", i, got[i], want[i], got)
		}
	}
	// ?once=1 replays and closes; an id the server did not hand out is refused.
	s = e.openFeed(path+"&once=1", e.admin, last)
	if ev, ok := <-s.events; ok {
		t.Fatalf("once after the newest id: got %+v", ev)
	}
	r := e.raw("GET", "/v1/admin/events/stream?once=1&last_event_id=nope", e.admin, nil)
	if r.Status != 400 || r.errCode() != "invalid_cursor" {
		t.Fatalf("bad Last-Event-ID: %d %s", r.Status, r.Body)
	}
}

func TestFeedUserSeesOnlyOwn(t *testing.T) {
	e := newEnv(t, withRuntime(&testenv.Runtime{}))
	aliceID, alice := e.user("feed-alice", app.RoleUser)
	bobID, bob := e.user("feed-bob", app.RoleUser)
	// A user_id asking for someone else's is ignored: the user stream is always the caller's.
	s := e.openFeed("/v1/user/events/stream?user_id="+bobID, alice, "")
	bs := e.openFeed("/v1/user/events/stream", bob, "")
	e.waitIdle(e.host(bobID))
	e.do("POST", "/v1/tokens", bob, map[string]any{"name": "bobs", "write": false}, 201, nil)
	ah := e.host(aliceID)
	e.waitIdle(ah)
	kinds := map[string]bool{}
	for done := false; !done; {
		ev := s.next(10 * time.Second)
		if ev.Item.UserID != aliceID {
			t.Fatalf("alice got an item of %q: %+v", ev.Item.UserID, ev)
		}
		kinds[ev.Event] = true
		done = ev.Event == "task" && ev.Item.Task.State == app.TaskSucceeded
	}
	if !kinds["audit"] || !kinds["host"] {
		t.Fatalf("alice's stream lacked kinds: %v", kinds)
	}
	if ev := bs.next(5 * time.Second); ev.Item.UserID != bobID {
		t.Fatalf("bob got %+v", ev)
	}
	// A user is not an admin: the admin stream is refused.
	if r := e.raw("GET", "/v1/admin/events/stream?once=1", alice, nil); r.Status != 403 {
		t.Fatalf("admin stream for a user: %d", r.Status)
	}
}

func TestFeedEndsWhenTokenRevoked(t *testing.T) {
	e := newEnv(t)
	_, alice := e.user("feed-revoke", app.RoleUser)
	var tok struct{ ID, Token string }
	e.do("POST", "/v1/tokens", alice, map[string]any{"name": "stream", "write": false}, 201, &tok)
	s := e.openFeed("/v1/user/events/stream", tok.Token, "")
	var open struct{ Sessions []app.SessionInfo }
	e.do("GET", "/v1/user/sessions", alice, nil, 200, &open)
	if len(open.Sessions) != 1 || open.Sessions[0].Kind != app.SessionFeed {
		t.Fatalf("open sessions %+v", open.Sessions)
	}
	start := time.Now()
	e.do("DELETE", "/v1/tokens/"+tok.ID, alice, nil, 204, nil)
	for {
		ev, ok := <-s.events
		if !ok {
			t.Fatal("stream closed without an end event")
		}
		if ev.Event != "end" {
			continue // the revocation's own audit event may come first
		}
		if !strings.Contains(ev.Data, app.EndTokenRevoked) {
			t.Fatalf("end %s", ev.Data)
		}
		break
	}
	if _, ok := <-s.events; ok {
		t.Fatal("events after the end")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the stream ended %s after the revocation", d)
	}
}

func TestFeedSlowSubscriberDoesNotBlockWriters(t *testing.T) {
	const buf = 16
	e := newEnv(t, withConfig(func(c *app.Config) { c.FeedBuffer = buf }))
	ctx := context.Background()
	admin, err := e.svc.AuthenticateRequest(ctx, "127.0.0.1", "GET /", e.admin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.svc.AdminFeed(ctx, admin, app.FeedQuery{FeedFilter: app.FeedFilter{Type: "auth.failure"}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Nobody reads f: writes go on past its buffer, and it is dropped.
	start := time.Now()
	for i := 0; i < buf+20; i++ {
		e.svc.RecordAuthFailure(ctx, "127.0.0.1", "token", "feed test")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("writes took %s", d)
	}
	if n := e.svc.FeedSubscribers(); n != 0 {
		t.Fatalf("%d subscribers after the slow one fell behind", n)
	}
	n := 0
	for {
		_, _, err := f.Next(ctx, nil)
		if err != nil {
			end, ok := err.(*app.FeedEnded)
			if !ok || !end.Behind {
				t.Fatalf("err %v", err)
			}
			break
		}
		if n++; n > buf {
			t.Fatal("more items than the buffer holds")
		}
	}
}
