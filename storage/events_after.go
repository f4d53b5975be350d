package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// EventsAfter returns the events written after the event after names (by their write
// sequence, the second half of the key), oldest first, that match q's user, host and type.
// It walks the time-ordered primary bucket forward from slack before the cursor's time, so
// an event stamped a little before the cursor's but committed after it is not missed.
func (t *tx) EventsAfter(after string, q app.EventQuery, slack time.Duration, max int) ([]app.Event, bool, error) {
	ck, err := hex.DecodeString(after)
	if err != nil || len(ck) != eventKeyLen {
		return nil, false, &app.Error{Kind: app.KindBadRequest, Code: app.CodeInvalidCursor, Field: "Last-Event-ID", Message: "invalid Last-Event-ID: not an event id this server handed out"}
	}
	if max <= 0 {
		max = MaxEventLimit
	}
	at := binary.BigEndian.Uint64(ck[:8])
	seq := binary.BigEndian.Uint64(ck[8:])
	from := uint64(0)
	if s := uint64(slack.Nanoseconds()); slack > 0 && at > s {
		from = at - s
	}
	type seqEvent struct {
		seq uint64
		e   app.Event
	}
	var out []seqEvent
	more := false
	c := t.bucket(bEvents).Cursor()
	for k, v := c.Seek(join(u64(from), u64(0))); k != nil; k, v = c.Next() {
		if len(k) != eventKeyLen {
			return nil, false, errCorruptIndex("event", k)
		}
		s := binary.BigEndian.Uint64(k[8:])
		if s <= seq || bytes.Equal(k, ck) {
			continue
		}
		var e app.Event
		if err := decodeEvent(v, &e); err != nil {
			return nil, false, fmt.Errorf("storage: decode event %x: %w", k, err)
		}
		if q.HostID != "" && e.HostID != q.HostID ||
			q.UserID != "" && e.UserID != q.UserID ||
			q.Type != "" && e.Action != q.Type {
			continue
		}
		if len(out) == max {
			more = true
			break
		}
		e.ID = hex.EncodeToString(k)
		out = append(out, seqEvent{s, e})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	events := make([]app.Event, len(out))
	for i, se := range out {
		events[i] = se.e
	}
	return events, more, nil
}
