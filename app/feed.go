package app

import (
	"context"
	"sync"
	"time"
)

// The change feed: what the service writes, as it commits. Every store transaction that
// commits publishes, in commit order, one item for each audit event it wrote (kind "audit",
// id = the stored event id, so a subscriber resumes from storage with it), each task it
// saved (kind "task": every step and state change), each host whose status or unavailable
// reason changed (kind "host") and each host whose egress check changed (kind
// "egress_check"). Only audit items are stored: the others carry no id and are not
// replayed (after a reconnect, read tasks and hosts again).
//
// The broker is owned by the Service. Publishing never blocks: each subscriber has a
// bounded buffer, and one that falls behind is dropped with a reason (it reconnects with
// its last id and resumes from storage).

// Feed item kinds.
const (
	FeedAudit       = "audit"
	FeedTask        = "task"
	FeedHost        = "host"
	FeedEgressCheck = "egress_check"
)

// Feed item types of the kinds that are not audit events (an audit item's type is its
// event's type).
const (
	FeedTypeTask        = "task.progress"
	FeedTypeHost        = "host.status"
	FeedTypeEgressCheck = "host.egress_check"
)

// FeedBuffer is how many items a subscriber may have waiting; one that falls further behind
// is ended (EndFeedBehind).
const FeedBuffer = 1024

// FeedReplayMax is the most stored events a resumption replays; a subscriber further behind
// is told to reload (EndFeedTooFarBehind).
const FeedReplayMax = 5000

// FeedReplaySlack is how far before a cursor's event the replay looks for events stamped
// earlier but committed after it (an event's time is taken when it is built, its id's order
// when it commits).
const FeedReplaySlack = time.Minute

// Reasons a feed ends besides the end of its credential (the session reasons).
const (
	EndFeedBehind       = "the subscriber fell behind; reconnect with Last-Event-ID to resume"
	EndFeedTooFarBehind = "too far behind to replay; reload with the events list and reconnect without Last-Event-ID"
)

// FeedItem is one item of the change feed.
type FeedItem struct {
	// ID is the stored event id of an audit item (its Last-Event-ID); "" for the rest.
	ID     string    `json:"id,omitempty"`
	Kind   string    `json:"kind"`
	Type   string    `json:"type"`
	Time   time.Time `json:"time"`
	UserID string    `json:"user_id,omitempty"`
	HostID string    `json:"host_id,omitempty"`

	Event       *Event           `json:"event,omitempty"`
	Task        *Task            `json:"task,omitempty"`
	Host        *FeedHostStatus  `json:"host,omitempty"`
	EgressCheck *HostEgressCheck `json:"egress_check,omitempty"`
}

// FeedHostStatus is a host's status as the feed tells it.
type FeedHostStatus struct {
	ID                string    `json:"id"`
	ShortID           string    `json:"short_id"`
	Status            HostState `json:"status"`
	Previous          HostState `json:"previous_status,omitempty"`
	UnavailableReason string    `json:"unavailable_reason,omitempty"`
}

// FeedFilter selects items like the events list: type, host and user ("" for any).
type FeedFilter struct {
	Type   string
	HostID string
	UserID string
}

func (f FeedFilter) match(it FeedItem) bool {
	return (f.Type == "" || f.Type == it.Type) &&
		(f.HostID == "" || f.HostID == it.HostID) &&
		(f.UserID == "" || f.UserID == it.UserID)
}

// feedBroker fans committed items out to subscribers.
type feedBroker struct {
	// commit orders publication with commits: it is held across a write transaction and
	// the publication of its items, and across a subscriber's last replay read and its
	// subscription, so a subscriber sees every item exactly once, in commit order.
	commit sync.Mutex
	mu     sync.Mutex
	subs   map[*feedSub]struct{}
}

func newFeedBroker() *feedBroker { return &feedBroker{subs: map[*feedSub]struct{}{}} }

type feedSub struct {
	filter FeedFilter
	ch     chan FeedItem
	behind chan struct{} // closed when it fell behind (and was unsubscribed)
}

func (b *feedBroker) subscribe(f FeedFilter, buf int) *feedSub {
	sub := &feedSub{filter: f, ch: make(chan FeedItem, buf), behind: make(chan struct{})}
	b.mu.Lock()
	b.subs[sub] = struct{}{}
	b.mu.Unlock()
	return sub
}

func (b *feedBroker) unsubscribe(sub *feedSub) {
	b.mu.Lock()
	delete(b.subs, sub)
	b.mu.Unlock()
}

// publish hands items to every subscriber that wants them, never waiting: a subscriber
// whose buffer is full is dropped.
func (b *feedBroker) publish(items []FeedItem) {
	if len(items) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.subs {
		for _, it := range items {
			if !sub.filter.match(it) {
				continue
			}
			select {
			case sub.ch <- it:
				continue
			default:
			}
			delete(b.subs, sub)
			close(sub.behind)
			break
		}
	}
}

// feedTx collects, inside a write transaction, the items the transaction publishes once it
// commits; it also stamps the request id on its audit events.
type feedTx struct {
	Tx
	reqID string
	items *[]FeedItem
}

func (t feedTx) AddEvent(e *Event) error {
	if e.RequestID == "" {
		e.RequestID = t.reqID
	}
	if err := t.Tx.AddEvent(e); err != nil {
		return err
	}
	ev := *e
	*t.items = append(*t.items, FeedItem{ID: ev.ID, Kind: FeedAudit, Type: ev.Action, Time: ev.Time,
		UserID: ev.UserID, HostID: ev.HostID, Event: &ev})
	return nil
}

func (t feedTx) PutTask(task Task) error {
	if err := t.Tx.PutTask(task); err != nil {
		return err
	}
	task.Steps = append([]TaskStep(nil), task.Steps...)
	at := task.CreatedAt
	if task.FinishedAt != nil {
		at = *task.FinishedAt
	} else if n := len(task.Steps); n > 0 {
		at = task.Steps[n-1].At
		if task.Steps[n-1].End != nil {
			at = *task.Steps[n-1].End
		}
	} else if task.StartedAt != nil {
		at = *task.StartedAt
	}
	*t.items = append(*t.items, FeedItem{Kind: FeedTask, Type: FeedTypeTask, Time: at,
		UserID: task.UserID, HostID: task.HostID, Task: &task})
	return nil
}

func (t feedTx) PutHost(h Host) error {
	old, err := t.Tx.GetHost(h.ID)
	if err != nil && !isNotFound(err) {
		return err
	}
	if err := t.Tx.PutHost(h); err != nil {
		return err
	}
	if old.Status != h.Status || old.UnavailableReason != h.UnavailableReason {
		*t.items = append(*t.items, FeedItem{Kind: FeedHost, Type: FeedTypeHost, Time: h.UpdatedAt,
			UserID: h.UserID, HostID: h.ID, Host: &FeedHostStatus{ID: h.ID, ShortID: h.ShortID,
				Status: h.Status, Previous: old.Status, UnavailableReason: h.UnavailableReason}})
	}
	if c := h.EgressCheck; c != nil && (old.EgressCheck == nil || old.EgressCheck.OK != c.OK ||
		!old.EgressCheck.CheckedAt.Equal(c.CheckedAt)) {
		cc := *c
		*t.items = append(*t.items, FeedItem{Kind: FeedEgressCheck, Type: FeedTypeEgressCheck, Time: c.CheckedAt,
			UserID: h.UserID, HostID: h.ID, EgressCheck: &cc})
	}
	return nil
}

// FeedQuery is what a subscriber asks for: a filter and where to resume.
type FeedQuery struct {
	FeedFilter
	// After is the id of the last audit event the subscriber has (Last-Event-ID): stored
	// events written after it are replayed first. "" starts with what happens next.
	After string
}

// Feed is an open subscription to the change feed, registered as a session (SessionFeed)
// so the end of its credential ends it.
type Feed struct {
	b      *feedBroker
	sub    *feedSub
	lease  *SessionLease
	replay []FeedItem
	tooFar bool // the resumption was too far behind: Next ends the feed at once
}

// FeedEnded is why app ended a feed: the end of its credential, or a subscriber that fell
// behind (Behind).
type FeedEnded struct {
	Reason string
	Behind bool
}

func (e *FeedEnded) Error() string { return "change feed ended: " + e.Reason }

// AdminFeed opens the change feed of everything (admins and viewers).
func (s *Service) AdminFeed(ctx context.Context, p Principal, q FeedQuery) (*Feed, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	return s.openFeed(ctx, p, q, "change feed (admin)")
}

// UserFeed opens the change feed of the caller's own items (those whose user_id is theirs).
func (s *Service) UserFeed(ctx context.Context, p Principal, q FeedQuery) (*Feed, error) {
	if err := s.requireAuth(p); err != nil {
		return nil, err
	}
	q.UserID = p.UserID
	return s.openFeed(ctx, p, q, "change feed (user)")
}

func (s *Service) openFeed(ctx context.Context, p Principal, q FeedQuery, detail string) (*Feed, error) {
	f := &Feed{b: s.feed}
	// The lease's Done ends Next; Close unsubscribes.
	lease, err := s.TrackSession(p, SessionFeed, q.HostID, "", detail, nil)
	if err != nil {
		return nil, err
	}
	f.lease = lease
	eq := EventQuery{UserID: q.UserID, HostID: q.HostID, Type: q.Type}
	after := q.After
	read := func() (bool, error) {
		if after == "" {
			return false, nil
		}
		var evs []Event
		var more bool
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			evs, more, err = tx.EventsAfter(after, eq, FeedReplaySlack, FeedReplayMax+1-len(f.replay))
			return err
		})
		if err != nil {
			return false, err
		}
		for i := range evs {
			ev := evs[i]
			f.replay = append(f.replay, FeedItem{ID: ev.ID, Kind: FeedAudit, Type: ev.Action, Time: ev.Time,
				UserID: ev.UserID, HostID: ev.HostID, Event: &ev})
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].ID
		}
		return more || len(f.replay) > FeedReplayMax, nil
	}
	// Most of the replay is read while writers go on; the rest, and the subscription,
	// while no transaction commits, so nothing is missed or seen twice.
	tooFar, err := read()
	if err == nil && !tooFar {
		s.feed.commit.Lock()
		tooFar, err = read()
		if err == nil && !tooFar {
			f.sub = s.feed.subscribe(q.FeedFilter, s.feedBuffer())
		}
		s.feed.commit.Unlock()
	}
	if err != nil {
		lease.Close()
		return nil, err
	}
	if tooFar {
		f.replay = nil
		f.tooFar = true
	}
	return f, nil
}

func (s *Service) feedBuffer() int {
	if s.cfg.FeedBuffer > 0 {
		return s.cfg.FeedBuffer
	}
	return FeedBuffer
}

// Replaying reports whether the replay has items left (or its refusal, when the
// subscriber was too far behind, is still to be told).
func (f *Feed) Replaying() bool { return len(f.replay) > 0 || f.tooFar }

// Next returns the next item: the replayed events first, then the items of transactions as
// they commit. ok is false when idle fired first (the door sends a heartbeat). err is a
// *FeedEnded when app ended the feed (its credential ended, or it fell behind), else ctx's.
func (f *Feed) Next(ctx context.Context, idle <-chan time.Time) (it FeedItem, ok bool, err error) {
	select {
	case <-f.lease.Done():
		return it, false, &FeedEnded{Reason: f.lease.Reason()}
	default:
	}
	if f.tooFar {
		return it, false, &FeedEnded{Reason: EndFeedTooFarBehind, Behind: true}
	}
	if len(f.replay) > 0 {
		it, f.replay = f.replay[0], f.replay[1:]
		return it, true, nil
	}
	select {
	case it = <-f.sub.ch:
		return it, true, nil
	case <-f.sub.behind:
		return it, false, &FeedEnded{Reason: EndFeedBehind, Behind: true}
	case <-f.lease.Done():
		return it, false, &FeedEnded{Reason: f.lease.Reason()}
	case <-ctx.Done():
		return it, false, ctx.Err()
	case <-idle:
		return it, false, nil
	}
}

// Close ends the subscription and its session. Safe to call twice.
func (f *Feed) Close() {
	if f.sub != nil {
		f.b.unsubscribe(f.sub)
	}
	f.lease.Close()
}

// FeedSubscribers is how many feeds are subscribed (for tests and metrics).
func (s *Service) FeedSubscribers() int {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	return len(s.feed.subs)
}
