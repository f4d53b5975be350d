package app

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// TokenUseFlushInterval is how often, by default, the access-token usage counted in memory
// is written (Config.TokenUseFlushInterval).
const TokenUseFlushInterval = 5 * time.Second

const (
	// tokenUseInterval: a token's last_used_at moves at most this often.
	tokenUseInterval = time.Minute
	// tokenUseMaxPending usage records held in memory start a flush at once.
	tokenUseMaxPending = 50000
	// tokenUseMaxLast last-use entries kept before the old, written ones are dropped.
	tokenUseMaxLast = 200000
	// tokenUseMaxRoute is the longest route kept in a usage record, in characters.
	tokenUseMaxRoute = 200
)

// ActionTokenUse is the audit event of a token's aggregated usage: one per token and minute
// in which it was used (Count requests, the last one's route in Message and its address in
// SourceIP). Refused requests are events of their own besides (auth.failure, *.denied).
const ActionTokenUse = "token.use"

// tokenUseTracker is the usage audit of access tokens. Every authenticated use is counted in
// memory, per token and minute, with the last route and address; a flush writes the
// minutes that are over (all of them on FlushTokenUse and at shutdown) and the tokens'
// last_used_at in one transaction. The request itself never writes.
type tokenUseTracker struct {
	mu      sync.Mutex
	buckets map[usageKey]*usageBucket
	last    map[string]*lastUse // per token id

	flushMu sync.Mutex  // one flush at a time
	early   atomic.Bool // a flush started by a full tracker is running
}

type usageKey struct {
	token  string
	minute int64 // Unix time / 60
}

type usageBucket struct {
	userID, username, tokenName string
	count                       int
	first, last                 time.Time
	route, ip                   string
}

// lastUse is a token's last_used_at/last_used_ip: moved at most once a minute, dirty until
// written.
type lastUse struct {
	at    time.Time
	ip    string
	dirty bool
}

func newTokenUseTracker() *tokenUseTracker {
	return &tokenUseTracker{buckets: map[usageKey]*usageBucket{}, last: map[string]*lastUse{}}
}

// noteTokenUse counts one request made with p's access token. It only touches memory.
func (s *Service) noteTokenUse(p Principal, route string) {
	now := s.Now()
	route = truncate(route, tokenUseMaxRoute)
	tu := s.tokenUse
	tu.mu.Lock()
	k := usageKey{token: p.TokenID, minute: now.Unix() / 60}
	b := tu.buckets[k]
	if b == nil {
		b = &usageBucket{userID: p.UserID, username: p.Username, tokenName: p.TokenName, first: now}
		tu.buckets[k] = b
	}
	b.count++
	b.last, b.route, b.ip = now, route, p.SourceIP
	if l := tu.last[p.TokenID]; l == nil || now.Sub(l.at) >= tokenUseInterval {
		tu.last[p.TokenID] = &lastUse{at: now, ip: p.SourceIP, dirty: true}
	}
	full := len(tu.buckets) >= tokenUseMaxPending
	tu.mu.Unlock()
	if full && tu.early.CompareAndSwap(false, true) {
		go func() {
			defer tu.early.Store(false)
			if err := s.FlushTokenUse(context.Background()); err != nil {
				s.log.Warn("writing token usage", "err", err)
			}
		}()
	}
}

// lastUsed is a token's last use as clients see it: the stored one, or a later one not yet
// written.
func (tu *tokenUseTracker) lastUsed(id string, at *time.Time, ip string) (*time.Time, string) {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	if l := tu.last[id]; l != nil && (at == nil || l.at.After(*at)) {
		t := l.at
		return &t, l.ip
	}
	return at, ip
}

// FlushTokenUse writes every access-token use counted so far (usage events, one per token
// and minute, and last_used_at) in one transaction. The background work Start runs calls
// it every TokenUseFlushInterval for the minutes that are over, and for all when it stops.
func (s *Service) FlushTokenUse(ctx context.Context) error { return s.flushTokenUse(ctx, true) }

type takenUsage struct {
	key usageKey
	b   usageBucket
}

type takenLast struct {
	id string
	l  lastUse
}

func (s *Service) flushTokenUse(ctx context.Context, all bool) error {
	tu := s.tokenUse
	tu.flushMu.Lock()
	defer tu.flushMu.Unlock()
	now := s.Now()
	current := now.Unix() / 60

	tu.mu.Lock()
	var uses []takenUsage
	for k, b := range tu.buckets {
		if all || k.minute < current {
			uses = append(uses, takenUsage{k, *b})
			delete(tu.buckets, k)
		}
	}
	var lasts []takenLast
	for id, l := range tu.last {
		if l.dirty {
			lasts = append(lasts, takenLast{id, *l})
			l.dirty = false
		} else if len(tu.last) > tokenUseMaxLast && now.Sub(l.at) >= tokenUseInterval {
			delete(tu.last, id)
		}
	}
	tu.mu.Unlock()
	if len(uses) == 0 && len(lasts) == 0 {
		return nil
	}
	sort.Slice(uses, func(i, j int) bool {
		if !uses[i].b.first.Equal(uses[j].b.first) {
			return uses[i].b.first.Before(uses[j].b.first)
		}
		return uses[i].key.token < uses[j].key.token
	})

	err := s.store.Update(ctx, func(tx Tx) error {
		for _, u := range uses {
			e := Event{Time: u.b.last, Action: ActionTokenUse, Result: ResultSuccess,
				ActorID: u.b.userID, ActorName: u.b.username, AuthMethod: "token",
				TokenID: u.key.token, TokenName: u.b.tokenName, SourceIP: u.b.ip,
				TargetType: "token", TargetID: u.key.token, UserID: u.b.userID, Count: u.b.count}
			if u.b.route != "" {
				e.Message = "last request: " + u.b.route
			}
			if err := tx.AddEvent(&e); err != nil {
				return err
			}
		}
		for _, l := range lasts {
			t, err := tx.GetToken(l.id)
			if isNotFound(err) {
				continue // revoked meanwhile
			}
			if err != nil {
				return err
			}
			if t.LastUsedAt != nil && !l.l.at.After(*t.LastUsedAt) {
				continue
			}
			at := l.l.at
			t.LastUsedAt, t.LastUsedIP = &at, l.l.ip
			if err := tx.PutToken(t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tu.restore(uses, lasts)
	}
	return err
}

// restore puts back what a failed flush took, for the next one.
func (tu *tokenUseTracker) restore(uses []takenUsage, lasts []takenLast) {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	for _, u := range uses {
		b := tu.buckets[u.key]
		if b == nil {
			nb := u.b
			tu.buckets[u.key] = &nb
			continue
		}
		// b holds later uses of the same minute: it keeps their route and address.
		b.count += u.b.count
		if u.b.first.Before(b.first) {
			b.first = u.b.first
		}
	}
	for _, l := range lasts {
		if cur := tu.last[l.id]; cur != nil && cur.at.Equal(l.l.at) {
			cur.dirty = true
		}
	}
}

// flushTokenUseLoop writes the usage of finished minutes every TokenUseFlushInterval, and
// all of it when ctx ends.
func (s *Service) flushTokenUseLoop(ctx context.Context) {
	every := s.cfg.TokenUseFlushInterval
	if every == 0 {
		every = TokenUseFlushInterval
	}
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			if err := s.flushTokenUse(context.WithoutCancel(ctx), true); err != nil {
				s.log.Error("writing token usage at shutdown", "err", err)
			}
			return
		case <-tick:
			if err := s.flushTokenUse(ctx, false); err != nil && ctx.Err() == nil {
				s.log.Warn("writing token usage", "err", err)
			}
		}
	}
}
