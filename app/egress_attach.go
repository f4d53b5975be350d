package app

import (
	"context"
	"fmt"
)

// TunnelAttacher is implemented by egress rooms that can give a running host's container its
// one way out (and take it away). The container has no other route, so a missing or dead
// tunnel means no traffic, never a leak.
type TunnelAttacher interface {
	Attach(ctx context.Context, hostID string, pid int, e EgressIP) error
	Detach(ctx context.Context, hostID string) error
}

func (s *Service) attacher() (TunnelAttacher, bool) {
	a, ok := s.tunnel.(TunnelAttacher)
	return a, ok
}

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

// attachEgress attaches the host's bound egress tunnel to its running container. Without a
// binding, or without a tunnel room that can attach, it does nothing.
func (s *Service) attachEgress(ctx context.Context, hostID string) error {
	a, ok := s.attacher()
	if !ok {
		return nil
	}
	e, found, err := s.boundEgress(ctx, hostID)
	if err != nil || !found {
		return err
	}
	rh, err := s.runtime.Inspect(ctx, hostID)
	if err != nil {
		return err
	}
	if rh.State != StateRunning || rh.Pid <= 0 {
		return nil // attached on the next start
	}
	if err := a.Attach(ctx, hostID, rh.Pid, e); err != nil {
		return &Error{Kind: KindUnavailable, Code: "egress_attach_failed",
			Message: fmt.Sprintf("egress %s (%s) could not be attached: %s", e.Label, e.IPAddress, AsError(err).Message), Err: err}
	}
	return nil
}

func (s *Service) detachEgress(ctx context.Context, hostID string) error {
	a, ok := s.attacher()
	if !ok {
		return nil
	}
	return a.Detach(ctx, hostID)
}

// applyBinding attaches or detaches right after a binding changed, so a running host's
// traffic follows its binding at once. The outcome is an event.
func (s *Service) applyBinding(ctx context.Context, p Principal, hostID string, bound bool) {
	if _, ok := s.attacher(); !ok {
		return
	}
	var err error
	action := "egress.attach"
	if bound {
		err = s.attachEgress(ctx, hostID)
	} else {
		action = "egress.detach"
		err = s.detachEgress(ctx, hostID)
	}
	e := s.event(p, action, ResultSuccess)
	e.TargetType, e.TargetID, e.HostID = "host", hostID, hostID
	if err != nil {
		e.Result, e.Message = ResultFailure, AsError(err).Message
		s.log.Warn(action, "host", hostID, "err", err)
	}
	s.record(ctx, e)
}
