package app

import "context"

// BindingInput is the body of a binding creation.
type BindingInput struct {
	HostID     string `json:"host_id"`
	EgressIPID string `json:"egress_ip_id"`
}

// CreateBinding binds a host to an egress IP. Unknown ids are not found; a host that is
// already bound is a conflict.
func (s *Service) CreateBinding(ctx context.Context, p Principal, in BindingInput) (Binding, error) {
	if err := s.requireAdminWrite(ctx, p, "binding.create"); err != nil {
		return Binding{}, err
	}
	if in.HostID == "" {
		return Binding{}, invalid("host_id", "host_id is required")
	}
	if in.EgressIPID == "" {
		return Binding{}, invalid("egress_ip_id", "egress_ip_id is required")
	}
	b := Binding{ID: newID(), HostID: in.HostID, EgressIPID: in.EgressIPID, CreatedAt: s.Now()}
	err := s.store.Update(ctx, func(tx Tx) error {
		h, err := tx.GetHost(in.HostID)
		if err != nil {
			return withMessage(err, "host not found")
		}
		e, err := tx.GetEgress(in.EgressIPID)
		if err != nil {
			return withMessage(err, "egress IP not found")
		}
		if s.cfg.UnboundNetwork != "" && s.cfg.UnboundNetwork != "none" &&
			(h.Status == HostRunning || h.Status == HostStarting || h.Status == HostUnavailable) {
			// Its container runs on the unbound network, which cannot be taken away from a
			// running container: binding it now would leave a way out around the tunnel.
			return conflict(CodeHostRunningOnNetwork, "host %s is running with the %s network: stop it, bind it, then start it (it is recreated with the tunnel as its only way out)", h.ID, s.cfg.UnboundNetwork)
		}
		if old, err := tx.GetBindingByHost(h.ID); err == nil {
			return conflict(CodeHostAlreadyBound, "host %s is already bound to egress IP %s (binding %s)", h.ID, old.EgressIPID, old.ID)
		} else if !isNotFound(err) {
			return err
		}
		if err := tx.PutBinding(b); err != nil {
			return err
		}
		ev := s.event(p, "binding.create", ResultSuccess)
		ev.TargetType, ev.TargetID, ev.HostID, ev.UserID = "binding", b.ID, h.ID, h.UserID
		ev.Message = "egress " + e.Label + " " + e.IPAddress
		return tx.AddEvent(&ev)
	})
	if err == nil {
		s.applyBinding(ctx, p, b.HostID, true)
	}
	return b, err
}

// ListBindings lists every binding.
func (s *Service) ListBindings(ctx context.Context, p Principal) ([]Binding, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	out := []Binding{}
	err := s.store.View(ctx, func(tx Tx) error {
		bs, err := tx.ListBindings()
		out = append(out, bs...)
		return err
	})
	return out, err
}

// DeleteBinding unbinds a host from its egress IP.
func (s *Service) DeleteBinding(ctx context.Context, p Principal, id string) error {
	if err := s.requireAdminWrite(ctx, p, "binding.delete"); err != nil {
		return err
	}
	var hostID string
	err := s.store.Update(ctx, func(tx Tx) error {
		b, err := tx.GetBinding(id)
		hostID = b.HostID
		if err != nil {
			return err
		}
		if err := tx.DeleteBinding(id); err != nil {
			return err
		}
		ev := s.event(p, "binding.delete", ResultSuccess)
		ev.TargetType, ev.TargetID, ev.HostID = "binding", b.ID, b.HostID
		if h, err := tx.GetHost(b.HostID); err == nil {
			ev.UserID = h.UserID
		}
		return tx.AddEvent(&ev)
	})
	if err == nil {
		s.applyBinding(ctx, p, hostID, false)
	}
	return err
}
