package app

import (
	"context"
	"errors"
	"fmt"
)

// boundEgress returns the egress IP a host is bound to, if any.
func (s *Service) boundEgress(ctx context.Context, hostID string) (EgressIP, bool, error) {
	var e EgressIP
	found := false
	err := s.store.View(ctx, func(tx Tx) error {
		b, err := tx.GetBindingByHost(hostID)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		e, err = tx.GetEgress(b.EgressIPID)
		found = err == nil
		return err
	})
	return e, found, err
}

// egressAttach is what attachBound did: the host's bound egress (bound is false when it
// has none) and the pid of the container it was attached to (0 when none runs).
type egressAttach struct {
	bound bool
	e     EgressIP
	pid   int
}

// attachBound attaches the host's bound egress tunnel to its running container. Without a
// binding, or on a server without tunnels, it does nothing.
func (s *Service) attachBound(ctx context.Context, hostID string) (egressAttach, error) {
	if s.noTunnel {
		return egressAttach{}, nil
	}
	e, found, err := s.boundEgress(ctx, hostID)
	if err != nil || !found {
		return egressAttach{}, err
	}
	out := egressAttach{bound: true, e: e}
	rh, err := s.runtime.Inspect(ctx, hostID)
	if err != nil {
		return out, err
	}
	if rh.State != StateRunning || rh.Pid <= 0 {
		return out, nil // attached on the next start
	}
	if err := s.tunnel.Attach(ctx, hostID, rh.Pid, e); err != nil {
		return out, &Error{Kind: KindUnavailable, Code: CodeEgressAttachFailed,
			Message: fmt.Sprintf("egress %s (%s) could not be attached: %s", e.Label, e.IPAddress, egressErrText(err)), Err: err}
	}
	out.pid = rh.Pid
	return out, nil
}

// egressErrText is the text of an error from the egress room. Its plain errors are the
// server's own account of a tunnel (no client input), kept rather than flattened to
// "internal error": an operator needs to tell one failure from another.
func egressErrText(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return truncate(err.Error(), 300)
}

func (s *Service) detachEgress(ctx context.Context, hostID string) error {
	if s.noTunnel {
		return nil
	}
	return s.tunnel.Detach(ctx, hostID)
}

// applyBinding attaches or detaches right after a binding changed, so a running host's
// traffic follows its binding at once. The outcome is an event; after an attach the
// host's egress is checked from inside its container in the background.
func (s *Service) applyBinding(ctx context.Context, p Principal, hostID string, bound bool) {
	if s.noTunnel {
		return
	}
	var (
		err error
		at  egressAttach
	)
	action := "egress.attach"
	if bound {
		at, err = s.attachBound(ctx, hostID)
	} else {
		action = "egress.detach"
		err = s.detachEgress(ctx, hostID)
	}
	var h Host
	if gerr := s.store.View(ctx, func(tx Tx) error {
		var err error
		h, err = tx.GetHost(hostID)
		return err
	}); gerr != nil && !isNotFound(gerr) {
		s.log.Warn("reading host after a binding change", "host", hostID, "err", gerr)
	}
	e := s.event(p, action, ResultSuccess)
	e.TargetType, e.TargetID, e.HostID, e.UserID = "host", hostID, hostID, h.UserID
	if err != nil {
		e.Result, e.Message = ResultFailure, AsError(err).Message
		s.log.Warn(action, "host", hostID, "err", err)
	}
	s.record(ctx, e)
	if h.ID == "" {
		return
	}
	switch {
	case !bound:
		// No egress, nothing that can fail: an unavailable host is running again.
		s.reconcile.forget(hostID)
		if err := s.clearUnavailable(ctx, hostID); err != nil {
			s.log.Warn("clearing unavailable after unbind", "host", hostID, "err", err)
		}
	case err != nil && AsError(err).Code == CodeEgressAttachFailed:
		// Recorded above; the reconciler retries without recording it again.
		s.reconcile.mu.Lock()
		m := s.reconcile.memo(hostID)
		m.attachFail, m.checked = AsError(err).Message, ""
		s.reconcile.mu.Unlock()
		if _, err := s.applyVerdict(ctx, hostID, egressVerdict{egressID: at.e.ID, reason: AsError(err).Message}, nil); err != nil {
			s.log.Warn("marking host unavailable", "host", hostID, "err", err)
		}
	case err == nil && at.pid > 0:
		s.startCheck(h, at, CheckTriggerBind)
	}
}
