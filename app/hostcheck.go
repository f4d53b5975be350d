package app

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// Why a host's egress is checked.
const (
	CheckTriggerStart    = "start"    // a start task attached the tunnel
	CheckTriggerBind     = "bind"     // a binding was created for a running host
	CheckTriggerReattach = "reattach" // the reconciler attached (or found) the tunnel of a container not yet checked
	CheckTriggerRecheck  = "recheck"  // the periodic check of a running host (Config.EgressRecheckInterval), or the retry of an unavailable one
	CheckTriggerStall    = "stall"    // the tunnel sent and received nothing back for StallWindow (Tunnel.Traffic)
)

// HostRecheckInterval is the default of Config.EgressRecheckInterval, and how often an
// unavailable host's egress is checked again at the longest, so a host recovers once its
// tunnel works without waiting for a restart.
const HostRecheckInterval = 5 * time.Minute

// StallWindow is how long a tunnel may send without receiving anything before the host is
// checked at once. A live WireGuard peer answers any packet within 10 s (a keepalive at
// least), so a window of 20 s with traffic out and nothing in is suspicious. A stall check
// runs at most once per stallCheckSpacing after the host's previous check.
const (
	StallWindow       = 20 * time.Second
	stallCheckSpacing = time.Minute
)

// hostCheckConcurrency bounds the egress checks running in the background.
const hostCheckConcurrency = 4

// errChecksUnconfigured matches the egress room's answer when no check service is set up.
var errChecksUnconfigured = &Error{Kind: KindUnavailable, Code: CodeTunnelCheckUnconfigured}

// egressMemo is what the reconciler remembers of a host's egress between passes.
type egressMemo struct {
	attachFail string    // the attach failure last recorded as an event ("" after a success)
	checked    string    // checkKey of the last check run (or started)
	at         time.Time // when the last check ended: the next one is scheduled from it
	outcome    string    // outcomeKey of the last check, so unchanged re-checks stay quiet
	running    bool      // a background check is in flight
	traffic    trafficSample
}

// trafficSample is a look at a tunnel's byte counters (Tunnel.Traffic).
type trafficSample struct {
	key    string // checkKey of the attachment counted
	rx, tx uint64
	at     time.Time
}

// recheckEvery is the period of a running host's periodic egress check: the configured
// interval, at most HostRecheckInterval while the host is unavailable (so it recovers),
// and 0 (never) for a healthy host when periodic checks are disabled.
func (s *Service) recheckEvery(unavailable bool) time.Duration {
	p := s.cfg.EgressRecheckInterval
	if unavailable && (p <= 0 || p > HostRecheckInterval) {
		return HostRecheckInterval
	}
	return max(p, 0)
}

// checkSlot is when a host checked at last (or whose check ended then) is due again with
// period p: at its own moment of the period, a hash of its id, at least p/2 and less than
// 3p/2 after last. A thousand hosts attached together (a server restart) are thus checked
// about evenly over the period afterwards rather than all in the same pass, and each keeps
// its moment from one period to the next.
func checkSlot(hostID string, last time.Time, p time.Duration) time.Time {
	f := fnv.New64a()
	f.Write([]byte(hostID))
	off := int64(f.Sum64() % uint64(p))
	// The first slot (k*p + off, in Unix nanoseconds) at or after last + p/2.
	base := last.Add(p/2).UnixNano() - off
	k := base / int64(p)
	if k*int64(p) < base {
		k++
	}
	return time.Unix(0, k*int64(p)+off).UTC()
}

func checkKey(pid int, e EgressIP) string {
	return fmt.Sprintf("%d/%s/%d", pid, e.ID, e.UpdatedAt.UnixNano())
}

// memo returns the host's egress memory; call with st.mu held.
func (st *reconcileState) memo(hostID string) *egressMemo {
	m := st.egress[hostID]
	if m == nil {
		m = &egressMemo{}
		st.egress[hostID] = m
	}
	return m
}

func (st *reconcileState) forget(hostID string) {
	st.mu.Lock()
	delete(st.egress, hostID)
	st.mu.Unlock()
}

// egressVerdict is what a check (or a failed attach) says about a running host.
type egressVerdict struct {
	taskID   string           // set by a task: apply whatever the host's status
	egressID string           // when set, apply only while the host is bound to it
	reason   string           // "" makes the host running, anything else unavailable
	keep     bool             // leave status and reason alone (the check could not run)
	check    *HostEgressCheck // recorded as the host's egress_check when not nil
}

// applyVerdict records a verdict on a host that still runs (and, for a task, is still the
// task's). It returns whether it applied; mkEvent, when set, builds the event recorded in
// the same transaction either way (it may return nil).
func (s *Service) applyVerdict(ctx context.Context, hostID string, v egressVerdict, mkEvent func(applied bool) *Event) (bool, error) {
	applied := false
	err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
		applied = false
		cur, err := tx.GetHost(hostID)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		// A task's own verdict always lands (the task holds the host); a background one
		// only on a host that still runs and that no task is changing.
		fits := v.taskID != "" || (cur.DesiredState == HostRunning &&
			(cur.Status == HostRunning || cur.Status == HostUnavailable) && s.checkIdle(tx, cur) == nil)
		if fits && v.egressID != "" {
			b, err := tx.GetBindingByHost(hostID)
			if err != nil && !isNotFound(err) {
				return err
			}
			fits = err == nil && b.EgressIPID == v.egressID
		}
		if fits {
			status, reason := HostRunning, v.reason
			if v.keep {
				status, reason = cur.Status, cur.UnavailableReason
				if v.taskID != "" { // a fresh start: nothing says the egress fails
					status, reason = HostRunning, ""
				}
			} else if reason != "" {
				status = HostUnavailable
			}
			if status != cur.Status || reason != cur.UnavailableReason || v.check != nil {
				cur.Status, cur.UnavailableReason, cur.UpdatedAt = status, reason, s.Now()
				if v.check != nil {
					cur.EgressCheck = v.check
				}
				if err := tx.PutHost(cur); err != nil {
					return err
				}
			}
			applied = true
		}
		if mkEvent != nil {
			if e := mkEvent(applied); e != nil {
				return tx.AddEvent(e)
			}
		}
		return nil
	})
	return applied, err
}

// markRunning makes a host running, clearing an unavailable reason (a start without a
// bound egress, or without checks).
func (s *Service) markRunning(ctx context.Context, hostID, taskID string) error {
	_, err := s.applyVerdict(ctx, hostID, egressVerdict{taskID: taskID}, nil)
	return err
}

// clearUnavailable forgets why a host was unavailable once it has no egress that can fail
// (unbound), whatever its state: an unavailable host runs again.
func (s *Service) clearUnavailable(ctx context.Context, hostID string) error {
	return s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
		cur, err := tx.GetHost(hostID)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.UnavailableReason == "" && cur.Status != HostUnavailable {
			return nil
		}
		cur.UnavailableReason, cur.UpdatedAt = "", s.Now()
		if cur.Status == HostUnavailable {
			cur.Status = HostRunning
		}
		return tx.PutHost(cur)
	})
}

// checkHost runs the egress check of a host whose tunnel is attached and records it: the
// host's status and egress_check, the reconciler's memory and one event per run (a
// re-check whose outcome did not change records none). It returns nil when the checks
// passed or could not run for want of a check service (skipped true), and an error saying
// what failed otherwise.
func (s *Service) checkHost(ctx context.Context, h Host, a egressAttach, trigger, taskID string) (skipped bool, _ error) {
	start := s.Now()
	res, err := s.tunnel.CheckHost(ctx, h.ID, a.pid, a.e)
	s.obs.EgressChecked("host", checkResult(res, err), s.Now().Sub(start))
	if ctx.Err() != nil {
		// The server is stopping (or the task was cancelled): a check cut short says
		// nothing about the egress.
		return false, ctx.Err()
	}
	key := checkKey(a.pid, a.e)
	var outcome string
	v := egressVerdict{taskID: taskID, egressID: a.e.ID}
	switch {
	case err != nil:
		outcome = "error:" + AsError(err).Code.String()
		v.keep = true
	default:
		outcome = outcomeKey(res)
		v.check = &HostEgressCheck{OK: res.OK, EgressIPID: a.e.ID, Trigger: trigger, CheckedAt: start,
			DurationMS: res.DurationMS, Checks: res.Checks}
		if !res.OK {
			v.reason = failureReason(res)
		}
	}
	st := s.reconcile
	st.mu.Lock()
	m := st.memo(h.ID)
	quiet := (trigger == CheckTriggerRecheck || trigger == CheckTriggerStall) && m.outcome == outcome
	m.checked, m.outcome, m.at = key, outcome, s.Now()
	st.mu.Unlock()

	unconfigured := err != nil && errors.Is(err, errChecksUnconfigured)
	if unconfigured {
		s.log.Debug("egress check skipped: no check service configured", "host", h.ID)
		quiet = true
		// Nothing can say the egress fails: the attach that led here clears an
		// unavailable host (else nothing ever would).
		v.keep = false
	}
	egress := fmt.Sprintf("egress %s (%s)", a.e.Label, a.e.IPAddress)
	mkEvent := func(applied bool) *Event {
		if quiet {
			return nil
		}
		e := s.event(systemPrincipal(), "egress.check", ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID = "host", h.ID, h.ID, h.UserID
		var sb strings.Builder
		fmt.Fprintf(&sb, "after %s: %s ", trigger, egress)
		switch {
		case err != nil:
			e.Result = ResultFailure
			fmt.Fprintf(&sb, "could not be checked: %s", egressErrText(err))
		default:
			if res.OK {
				fmt.Fprintf(&sb, "passed in %d ms: ", res.DurationMS)
			} else {
				e.Result = ResultFailure
				fmt.Fprintf(&sb, "failed in %d ms: ", res.DurationMS)
			}
			for i, c := range res.Checks {
				if i > 0 {
					sb.WriteString("; ")
				}
				state := "ok"
				if !c.OK {
					state = "FAILED"
				}
				fmt.Fprintf(&sb, "%s %s %d ms", c.Name, state, c.DurationMS)
				if !c.OK && c.Reason != "" {
					fmt.Fprintf(&sb, " (%s)", truncate(c.Reason, 300))
				}
			}
			switch {
			case !applied:
			case res.OK && h.Status == HostUnavailable:
				sb.WriteString("; host available again")
			case !res.OK:
				sb.WriteString("; host marked unavailable")
			}
		}
		e.Message = sb.String()
		return &e
	}
	if _, aerr := s.applyVerdict(ctx, h.ID, v, mkEvent); aerr != nil {
		s.log.Error("recording egress check", "host", h.ID, "err", aerr)
	}
	switch {
	case unconfigured:
		return true, nil
	case err != nil:
		return false, &Error{Kind: KindUnavailable, Code: CodeEgressCheckError, Message: egress + " could not be checked: " + egressErrText(err), Err: err}
	case !res.OK:
		return false, &Error{Kind: KindUnavailable, Code: CodeEgressCheckFailed, Message: v.reason}
	}
	return false, nil
}

// outcomeKey names what a check found, without the wording that varies between runs.
func outcomeKey(res EgressTestResult) string {
	if res.OK {
		return "ok"
	}
	var failed []string
	for _, c := range res.Checks {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	return "failed:" + strings.Join(failed, ",")
}

// failureReason is the unavailable reason of a failed check: the failing checks' reasons,
// leaving out checks skipped because an earlier one failed.
func failureReason(res EgressTestResult) string {
	var parts []string
	for _, c := range res.Checks {
		if c.OK || (len(parts) > 0 && strings.HasPrefix(c.Reason, "skipped")) {
			continue
		}
		parts = append(parts, c.Name+": "+truncate(c.Reason, 300))
	}
	if len(parts) == 0 {
		parts = append(parts, "not every check ran")
	}
	return "egress check failed: " + strings.Join(parts, "; ")
}

// checkHostLater runs checkHost in the background (bounded), for checks nobody waits on:
// after a bind, and the reconciler's. The caller has marked the memo running.
func (s *Service) checkHostLater(h Host, a egressAttach, trigger string) {
	s.checks.Add(1)
	go func() {
		defer s.checks.Done()
		defer func() {
			s.reconcile.mu.Lock()
			s.reconcile.memo(h.ID).running = false
			s.reconcile.mu.Unlock()
		}()
		ctx := s.backgroundContext()
		select {
		case s.checkSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.checkSem }()
		if _, err := s.checkHost(ctx, h, a, trigger, ""); err != nil && ctx.Err() == nil {
			s.log.Warn("egress check", "host", h.ID, "trigger", trigger, "err", err)
		}
	}()
}

// startCheck starts a background check unless one is in flight. It reports whether it did.
func (s *Service) startCheck(h Host, a egressAttach, trigger string) bool {
	if s.noTunnel || a.pid <= 0 {
		return false
	}
	st := s.reconcile
	st.mu.Lock()
	m := st.memo(h.ID)
	if m.running {
		st.mu.Unlock()
		return false
	}
	m.running, m.checked = true, checkKey(a.pid, a.e)
	st.mu.Unlock()
	s.checkHostLater(h, a, trigger)
	return true
}

// backgroundContext is the context of work nobody waits on: it ends when the service stops.
func (s *Service) backgroundContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bgCtx == nil {
		return context.Background()
	}
	return s.bgCtx
}

// reconcileEgress keeps a running bound host's egress attached and checked: it attaches
// (a no-op when the same container has it), records an attach failure once per reason
// (until it changes or attaching succeeds) and marks the host unavailable meanwhile, and
// checks the egress of a container not yet checked, again once per recheckEvery (at the
// host's own moment, checkSlot), and at once when its tunnel stalls (Tunnel.Traffic).
func (s *Service) reconcileEgress(ctx context.Context, h Host) {
	if s.noTunnel {
		return
	}
	st := s.reconcile
	a, err := s.attachBound(ctx, h.ID)
	if err != nil {
		reason := AsError(err).Message
		st.mu.Lock()
		m := st.memo(h.ID)
		first := m.attachFail != reason
		m.attachFail, m.checked = reason, ""
		st.mu.Unlock()
		// Only a failed attach says the egress is broken; a runtime or store hiccup on the
		// way is recorded (once) and left at that.
		v := egressVerdict{egressID: a.e.ID, reason: reason, keep: AsError(err).Code != CodeEgressAttachFailed}
		var mk func(bool) *Event
		if first {
			mk = func(applied bool) *Event {
				e := s.event(systemPrincipal(), "egress.attach", ResultFailure)
				e.TargetType, e.TargetID, e.HostID, e.UserID, e.Message = "host", h.ID, h.ID, h.UserID, reason
				if applied && !v.keep && h.Status != HostUnavailable {
					e.Message += "; host marked unavailable"
				}
				return &e
			}
		}
		if _, err := s.applyVerdict(ctx, h.ID, v, mk); err != nil {
			s.log.Error("recording egress attach failure", "host", h.ID, "err", err)
		}
		return
	}
	st.mu.Lock()
	m := st.memo(h.ID)
	recovered := m.attachFail != ""
	m.attachFail = ""
	st.mu.Unlock()
	if recovered {
		e := s.event(systemPrincipal(), "egress.attach", ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID = "host", h.ID, h.ID, h.UserID
		e.Message = fmt.Sprintf("egress %s (%s) attached again", a.e.Label, a.e.IPAddress)
		s.record(ctx, e)
	}
	if !a.bound {
		st.forget(h.ID)
		if h.UnavailableReason != "" || h.Status == HostUnavailable {
			_ = s.clearUnavailable(ctx, h.ID) // unbound: no egress can fail
		}
		return
	}
	if a.pid <= 0 {
		return
	}
	key := checkKey(a.pid, a.e)
	now := s.Now()
	stalled := s.trafficStalled(h.ID, key, now)
	st.mu.Lock()
	trigger := ""
	p := s.recheckEvery(h.Status == HostUnavailable)
	switch {
	case m.running:
	case m.checked != key:
		trigger = CheckTriggerReattach
	case p > 0 && !now.Before(checkSlot(h.ID, m.at, p)):
		trigger = CheckTriggerRecheck
	case stalled && m.outcome == "ok" && h.Status == HostRunning && !now.Before(m.at.Add(stallCheckSpacing)):
		trigger = CheckTriggerStall
	}
	st.mu.Unlock()
	if trigger != "" {
		s.startCheck(h, a, trigger)
	}
}

// trafficStalled looks at the counters of the host's tunnel (when it has them) and
// reports whether, over the last StallWindow or more, it sent something and
// received nothing. The look is kept until the window has passed, so frequent passes
// (engine events) do not shrink it.
func (s *Service) trafficStalled(hostID, key string, now time.Time) bool {
	rx, tx, ok := s.tunnel.Traffic(hostID)
	st := s.reconcile
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.memo(hostID)
	prev := m.traffic
	cur := trafficSample{key: key, rx: rx, tx: tx, at: now}
	switch {
	case !ok:
		m.traffic = trafficSample{}
		return false
	case prev.key != key || rx < prev.rx || tx < prev.tx:
		m.traffic = cur // a new tunnel (or counters that restarted): start over
		return false
	case now.Sub(prev.at) < StallWindow:
		return false
	}
	m.traffic = cur
	return tx > prev.tx && rx == prev.rx
}

// pruneEgressMemos forgets the egress memory of hosts that no longer exist.
func (st *reconcileState) pruneEgressMemos(known map[string]bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, m := range st.egress {
		if !known[id] && !m.running {
			delete(st.egress, id)
		}
	}
}
