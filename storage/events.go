package storage

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// Event page sizes.
const (
	DefaultEventLimit = 50
	MaxEventLimit     = 500
)

// eventKeyLen is time(8) seq(8).
const eventKeyLen = 16

func errCorruptIndex(what string, k []byte) error {
	return fmt.Errorf("storage: corrupt %s index key %x", what, k)
}

// AddEvent appends e to the audit log and sets e.ID (and e.Time, when zero, to now).
func (t *tx) AddEvent(e *app.Event) error {
	if e == nil {
		return errors.New("storage: nil event")
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	recs := t.bucket(bEvents)
	// Keys are mostly appended in time order: pack pages fuller than the default half.
	recs.FillPercent = 0.9
	seq, err := recs.NextSequence()
	if err != nil {
		return err
	}
	key := join(u64(timeKey(e.Time)), u64(seq))
	e.ID = hex.EncodeToString(key)
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("storage: encode event: %w", err)
	}
	if err := recs.Put(key, raw); err != nil {
		return err
	}
	for _, ix := range eventIndexKeys(e, key) {
		if err := t.bucket(ix.bucket).Put(ix.key, empty); err != nil {
			return err
		}
	}
	return nil
}

// eventIndex is one index entry of an event: its bucket and key.
type eventIndex struct{ bucket, key []byte }

// eventIndexKeys are the host, user and type index entries of event e stored under key.
func eventIndexKeys(e *app.Event, key []byte) []eventIndex {
	var out []eventIndex
	for _, ix := range []struct {
		bucket []byte
		value  string
	}{{bEventsByHost, e.HostID}, {bEventsByUser, e.UserID}, {bEventsByType, e.Action}} {
		if ix.value != "" {
			out = append(out, eventIndex{ix.bucket, join(prefix(ix.value), key)})
		}
	}
	return out
}

func (t *tx) QueryEvents(q app.EventQuery) (app.EventPage, error) {
	page, _, err := t.queryEvents(q)
	return page, err
}

// queryEvents also returns how many index entries it visited, so tests can prove it seeks.
//
// It walks one index backward, from the upper bound (Until, or just below the cursor) down
// to the lower bound (Since), picking the most selective index the query names: host, else
// user, else type, else the time-ordered primary bucket. Filters the chosen index does not
// cover are checked on the decoded record. It stops after limit+1 matches.
func (t *tx) queryEvents(q app.EventQuery) (app.EventPage, int, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultEventLimit
	}
	limit = min(limit, MaxEventLimit)
	// Sized for a default page up front: growing the slice copied every event several times.
	page := app.EventPage{Events: make([]app.Event, 0, min(limit, 2*DefaultEventLimit))}

	// Upper bound: inclusive Until (every sequence at that nanosecond) or exclusive cursor.
	upper := bytes.Repeat([]byte{0xff}, eventKeyLen)
	if !q.Until.IsZero() {
		upper = join(u64(timeKey(q.Until)), u64(^uint64(0)))
	}
	exclusive := false
	if q.Cursor != "" {
		ck, err := hex.DecodeString(q.Cursor)
		if err != nil || len(ck) != eventKeyLen {
			return page, 0, &app.Error{Kind: app.KindBadRequest, Code: app.CodeInvalidCursor, Field: "cursor", Message: "invalid cursor"}
		}
		if bytes.Compare(ck, upper) <= 0 {
			upper, exclusive = ck, true
		}
	}
	var lower []byte
	if !q.Since.IsZero() {
		lower = join(u64(timeKey(q.Since)), u64(0))
	}

	recs := t.bucket(bEvents)
	idx, p := recs, []byte(nil)
	switch {
	case q.HostID != "":
		idx, p = t.bucket(bEventsByHost), prefix(q.HostID)
	case q.UserID != "":
		idx, p = t.bucket(bEventsByUser), prefix(q.UserID)
	case q.Type != "":
		idx, p = t.bucket(bEventsByType), prefix(q.Type)
	}
	primary := idx == recs

	c := idx.Cursor()
	target := join(p, upper)
	k, v := c.Seek(target)
	switch {
	case k == nil:
		k, v = c.Last()
	case bytes.Compare(k, target) > 0 || exclusive && bytes.Equal(k, target):
		k, v = c.Prev()
	}
	visited := 0
	for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Prev() {
		visited++
		ek := k[len(p):]
		if len(ek) != eventKeyLen {
			return page, visited, errCorruptIndex("event", k)
		}
		if lower != nil && bytes.Compare(ek, lower) < 0 {
			break
		}
		if !primary {
			if v = recs.Get(ek); v == nil {
				return page, visited, errCorruptIndex("event", k)
			}
		}
		var e app.Event
		if err := decodeEvent(v, &e); err != nil {
			return page, visited, fmt.Errorf("storage: decode event %x: %w", ek, err)
		}
		e.ID = hex.EncodeToString(ek)
		if q.HostID != "" && e.HostID != q.HostID ||
			q.UserID != "" && e.UserID != q.UserID ||
			q.Type != "" && e.Action != q.Type {
			continue
		}
		if len(page.Events) == limit {
			page.NextCursor = page.Events[limit-1].ID
			break
		}
		page.Events = append(page.Events, e)
	}
	return page, visited, nil
}

// CountEventsSince counts the events at or after t.
func (t *tx) CountEventsSince(since time.Time) (int, error) {
	c := t.bucket(bEvents).Cursor()
	n := 0
	for k, _ := c.Seek(u64(timeKey(since))); k != nil; k, _ = c.Next() {
		n++
	}
	return n, nil
}
