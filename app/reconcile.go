package app

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Reconciler timing.
const (
	ReconcileInterval = 30 * time.Second
	ExpiryInterval    = time.Minute
	restartBackoffMin = 5 * time.Second
	restartBackoffMax = 5 * time.Minute
)

// reconcileState is the reconciler's memory: restart back-off per host and orphans already
// reported.
type reconcileState struct {
	mu       sync.Mutex
	attempts map[string]int
	next     map[string]time.Time
	orphans  map[string]bool
	egress   map[string]*egressMemo // per host: attach failures recorded, checks run
}

func newReconcileState() *reconcileState {
	return &reconcileState{attempts: map[string]int{}, next: map[string]time.Time{}, orphans: map[string]bool{},
		egress: map[string]*egressMemo{}}
}

// ReconcileReport says what one pass did.
type ReconcileReport struct {
	Recreated []string
	Restarted []string
	Stopped   []string
	Orphans   []string
	Deferred  []string // restarts held back by back-off
}

// Reconcile compares the hosts that should exist with the engine's labelled containers and
// corrects drift: a missing container of a host that should run is recreated, a stopped one
// is started again (with back-off, so a crash-looping container is not hammered), a running
// one that should be stopped is stopped, and a labelled container without a host is reported.
// Every correction is an event.
func (s *Service) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	actual, err := s.runtime.List(ctx)
	if err != nil {
		return rep, err
	}
	byHost := map[string]RuntimeHost{}
	for _, c := range actual {
		if c.HostID != "" {
			byHost[c.HostID] = c
		}
	}
	var hosts []Host
	if err := s.store.View(ctx, func(tx Tx) error {
		var err error
		hosts, err = tx.ListHosts()
		return err
	}); err != nil {
		return rep, err
	}
	known := map[string]bool{}
	now := s.Now()
	st := s.reconcile
	for _, h := range hosts {
		known[h.ID] = true
		if h.ActiveTaskID != "" || h.DesiredState == HostDeleted {
			continue
		}
		c, ok := byHost[h.ID]
		switch {
		case h.DesiredState == HostRunning && (!ok || c.State == StateMissing):
			if err := s.systemTask(ctx, h, TaskHostCreate, "reconcile.recreate", "container missing; recreating"); err == nil {
				rep.Recreated = append(rep.Recreated, h.ID)
			}
		case h.DesiredState == HostRunning && c.State != StateRunning:
			st.mu.Lock()
			wait := st.next[h.ID]
			st.mu.Unlock()
			if now.Before(wait) {
				rep.Deferred = append(rep.Deferred, h.ID)
				continue
			}
			if err := s.systemTask(ctx, h, TaskHostStart, "reconcile.restart", "container "+c.State+" behind our back; starting"); err == nil {
				st.mu.Lock()
				st.attempts[h.ID]++
				d := restartBackoffMin << min(st.attempts[h.ID]-1, 10)
				if d > restartBackoffMax {
					d = restartBackoffMax
				}
				st.next[h.ID] = now.Add(d)
				st.mu.Unlock()
				rep.Restarted = append(rep.Restarted, h.ID)
			}
		case h.DesiredState == HostStopped && ok && c.State == StateRunning:
			if err := s.systemTask(ctx, h, TaskHostStop, "reconcile.stop", "container running although the host should be stopped; stopping"); err == nil {
				rep.Stopped = append(rep.Stopped, h.ID)
			}
		case h.DesiredState == HostRunning && c.State == StateRunning:
			// Healthy: forget old back-off once it has stayed up past its window, and make
			// the recorded status true.
			st.mu.Lock()
			if now.After(st.next[h.ID].Add(restartBackoffMax)) {
				delete(st.attempts, h.ID)
				delete(st.next, h.ID)
			}
			st.mu.Unlock()
			if h.Status != HostRunning && h.Status != HostUnavailable {
				// Running again; unavailable still when the last verdict on this
				// container's egress says so (the egress pass below revisits it).
				status := HostRunning
				if h.UnavailableReason != "" {
					status = HostUnavailable
				}
				if s.setHostStatus(ctx, h.ID, status) == nil {
					h.Status = status
				}
			}
			// Re-attach the egress after a container or server restart (a no-op when the
			// same container already has it) and check a container not yet checked.
			s.reconcileEgress(ctx, h)
		case h.DesiredState == HostStopped && (!ok || c.State != StateRunning):
			if h.Status != HostStopped && h.Status != HostError {
				_ = s.setHostStatus(ctx, h.ID, HostStopped)
			}
		}
	}
	st.pruneEgressMemos(known)
	for _, c := range actual {
		if known[c.HostID] {
			continue
		}
		st.mu.Lock()
		seen := st.orphans[c.ContainerID]
		st.orphans[c.ContainerID] = true
		st.mu.Unlock()
		if seen {
			continue
		}
		e := s.event(systemPrincipal(), "reconcile.orphan", ResultFailure)
		e.TargetType, e.TargetID, e.Message = "container", c.ContainerID, "container labelled for host "+c.HostID+" has no host record"
		s.record(ctx, e)
		rep.Orphans = append(rep.Orphans, c.ContainerID)
	}
	return rep, nil
}

// systemTask queues a task on behalf of the server, with an event naming why.
func (s *Service) systemTask(ctx context.Context, h Host, kind, action, why string) error {
	var t Task
	err := s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.GetHost(h.ID)
		if err != nil {
			return err
		}
		if err := s.checkIdle(tx, cur); err != nil {
			return err
		}
		if cur.ActiveTaskID != h.ActiveTaskID || cur.DesiredState != h.DesiredState {
			return conflict(CodeHostChanged, "host changed during reconciliation")
		}
		t = s.newTask(systemPrincipal(), kind, h.ID, h.UserID)
		cur.ActiveTaskID, cur.UpdatedAt = t.ID, s.Now()
		if err := tx.PutHost(cur); err != nil {
			return err
		}
		if err := tx.PutTask(t); err != nil {
			return err
		}
		e := s.event(systemPrincipal(), action, ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID, e.Message = "host", h.ID, h.ID, h.UserID, why+" (task "+t.ID+")"
		return tx.AddEvent(&e)
	})
	if err != nil {
		return err
	}
	s.enqueue(t.ID)
	return nil
}

// untilNextExpiry is how long until the next active account expires (a few milliseconds
// after), at most ExpiryInterval.
func (s *Service) untilNextExpiry(ctx context.Context) time.Duration {
	next := ExpiryInterval
	now := s.Now()
	_ = s.store.View(ctx, func(tx Tx) error {
		us, err := tx.ListUsers()
		for _, u := range us {
			if u.Status == UserActive && u.ExpiresAt != nil {
				if d := u.ExpiresAt.Sub(now) + 5*time.Millisecond; d < next {
					next = max(d, time.Millisecond)
				}
			}
		}
		return err
	})
	return next
}

// kickExpiry asks the expiry scanner to look again (an expiry was set or changed).
func (s *Service) kickExpiry() {
	select {
	case s.expiryKick <- struct{}{}:
	default:
	}
}

// ExpireUsers marks users past expires_at as expired (ending their sessions and tokens) and
// stops their running hosts. It returns the ids of the users it expired.
func (s *Service) ExpireUsers(ctx context.Context) ([]string, error) {
	now := s.Now()
	var expired []string
	var stops []Host
	err := s.store.Update(ctx, func(tx Tx) error {
		expired, stops = expired[:0], stops[:0]
		us, err := tx.ListUsers()
		if err != nil {
			return err
		}
		for _, u := range us {
			if u.Status != UserActive || u.ExpiresAt == nil || now.Before(*u.ExpiresAt) {
				continue
			}
			u.Status, u.UpdatedAt = UserExpired, now
			u.Version++
			if err := tx.PutUser(u); err != nil {
				return err
			}
			e := s.event(systemPrincipal(), "user.expired", ResultSuccess)
			e.TargetType, e.TargetID, e.UserID, e.Message = "user", u.ID, u.ID, u.Username+" expired at "+u.ExpiresAt.Format(time.RFC3339)
			if err := tx.AddEvent(&e); err != nil {
				return err
			}
			expired = append(expired, u.ID)
			hs, err := tx.ListHostsByUser(u.ID)
			if err != nil {
				return err
			}
			for _, h := range hs {
				if h.DesiredState == HostRunning {
					stops = append(stops, h)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range expired {
		s.endSessions(ctx, systemPrincipal(), sessionsOfUser(id), EndUserExpired)
	}
	for _, h := range stops {
		if err := s.expireStop(ctx, h); err != nil {
			s.log.Warn("stopping an expired user's host", "host", h.ID, "err", err)
		}
	}
	return expired, nil
}

// expireStop makes an expired user's host desired-stopped and queues its stop (or leaves the
// desire for the reconciler when another task is running).
func (s *Service) expireStop(ctx context.Context, h Host) error {
	var t Task
	err := s.store.Update(ctx, func(tx Tx) error {
		cur, err := tx.GetHost(h.ID)
		if err != nil {
			return err
		}
		cur.DesiredState, cur.UpdatedAt = HostStopped, s.Now()
		e := s.event(systemPrincipal(), "host.expire_stop", ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID, e.Message = "host", h.ID, h.ID, h.UserID, "owner expired"
		if busy := s.checkIdle(tx, cur); busy == nil {
			t = s.newTask(systemPrincipal(), TaskHostStop, h.ID, h.UserID)
			cur.ActiveTaskID, cur.Status = t.ID, HostStopping
			if err := tx.PutTask(t); err != nil {
				return err
			}
		}
		if err := tx.PutHost(cur); err != nil {
			return err
		}
		return tx.AddEvent(&e)
	})
	if err == nil && t.ID != "" {
		s.enqueue(t.ID)
	}
	return err
}

// watch runs the reconciler and the expiry scanner: at start, on a timer, and within
// seconds of an engine event about one of our containers.
func (s *Service) watch(ctx context.Context) {
	kick := make(chan struct{}, 1)
	go s.followEngine(ctx, kick)
	rt := time.NewTicker(s.cfg.ReconcileInterval)
	// The expiry scanner runs every ExpiryInterval and at the moment the next account
	// expires, so an expiry ends its sessions on the second (an expiry set or changed kicks
	// it to look again).
	et := time.NewTimer(ExpiryInterval)
	defer rt.Stop()
	defer et.Stop()
	expire := func() {
		if _, err := s.ExpireUsers(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("expiry scan", "err", err)
		}
		et.Stop()
		et.Reset(s.untilNextExpiry(ctx))
	}
	pass := func() {
		expire()
		if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrRuntimeUnavailable) {
			s.log.Warn("reconcile", "err", err)
		}
	}
	pass()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rt.C:
			pass()
		case <-et.C:
			expire()
		case <-s.expiryKick:
			expire()
		case <-kick:
			// Let the engine settle (a stop emits kill, die, stop in a burst) before looking.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrRuntimeUnavailable) {
				s.log.Warn("reconcile", "err", err)
			}
		}
	}
}

// followEngine subscribes to the engine's events, resubscribing with back-off when the
// stream breaks (engine restarts), and kicks the reconciler on state changes.
func (s *Service) followEngine(ctx context.Context, kick chan<- struct{}) {
	backoff := time.Second
	for ctx.Err() == nil {
		evs, errs := s.runtime.Events(ctx)
		got := false
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-evs:
				if !ok {
					break loop
				}
				got = true
				switch ev.Action {
				case "die", "stop", "destroy", "oom", "kill":
					select {
					case kick <- struct{}{}:
					default:
					}
				}
			case _, ok := <-errs:
				if !ok {
					errs = nil
					continue
				}
				break loop
			}
		}
		if got {
			backoff = time.Second
			// The stream broke after working: the engine may have restarted; look now.
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 30*time.Second {
			backoff *= 2
		}
	}
}
