package app

import (
	"context"
	"errors"
	"fmt"
)

// execute performs a host task against the runtime, step by step.
func (s *Service) execute(ctx context.Context, r *taskRun) error {
	t := r.t
	if t.Kind == TaskHostPurge {
		_ = s.detachEgress(ctx, t.HostID)
		return r.step(ctx, "remove container and home volume", func() error {
			return s.runtime.Remove(ctx, t.HostID, false)
		})
	}
	var h Host
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		h, err = tx.GetHost(t.HostID)
		return err
	})
	if err != nil {
		return err
	}
	switch t.Kind {
	case TaskHostCreate:
		if err := s.createContainer(ctx, r, h); err != nil {
			return err
		}
		if h.DesiredState == HostRunning {
			return s.startContainer(ctx, r, h)
		}
		return s.setHostStatus(ctx, h.ID, HostStopped)
	case TaskHostStart:
		return s.startContainer(ctx, r, h)
	case TaskHostStop:
		_ = s.detachEgress(ctx, h.ID)
		if err := r.step(ctx, "stop container", func() error {
			err := s.runtime.Stop(ctx, h.ID, s.cfg.StopTimeout)
			if isRuntimeCode(err, CodeContainerMissing) {
				return nil // nothing runs: the host is stopped
			}
			return err
		}); err != nil {
			return err
		}
		return s.setHostStatus(ctx, h.ID, HostStopped)
	case TaskHostRebuild:
		_ = s.detachEgress(ctx, h.ID)
		if err := r.step(ctx, "remove old container (home kept)", func() error {
			return s.runtime.Remove(ctx, h.ID, true)
		}); err != nil {
			return err
		}
		if !h.CustomImage && h.Image != s.cfg.ManagedImage {
			if err := r.step(ctx, "switch to the current managed image "+s.cfg.ManagedImage, func() error {
				h.Image = s.cfg.ManagedImage
				return s.store.Update(ctx, func(tx Tx) error {
					cur, err := tx.GetHost(h.ID)
					if err != nil {
						return err
					}
					cur.Image, cur.UpdatedAt = h.Image, s.Now()
					return tx.PutHost(cur)
				})
			}); err != nil {
				return err
			}
		}
		if err := s.createContainer(ctx, r, h); err != nil {
			return err
		}
		if h.DesiredState == HostRunning {
			return s.startContainer(ctx, r, h)
		}
		return s.setHostStatus(ctx, h.ID, HostStopped)
	case TaskHostDelete:
		keep := t.Options[taskOptionKeepHome] == "true"
		name := "remove container and home volume"
		if keep {
			name = "remove container (home kept)"
		}
		_ = s.detachEgress(ctx, h.ID)
		if err := r.step(ctx, name, func() error { return s.runtime.Remove(ctx, h.ID, keep) }); err != nil {
			return err
		}
		return r.step(ctx, "delete host record", func() error {
			return s.store.Update(ctx, func(tx Tx) error {
				if err := s.deleteHostRecords(tx, h.ID); err != nil && !isNotFound(err) {
					return err
				}
				return nil
			})
		})
	case TaskHostRotateSSH:
		defer s.endSessions(ctx, systemPrincipal(), hostPasswordSessions(t.HostID), EndHostPassword)
		return r.step(ctx, "store new SSH password", func() error {
			return s.store.Update(ctx, func(tx Tx) error {
				h, err := tx.GetHost(t.HostID)
				if err != nil {
					return err
				}
				h.SSHPasswordHash, h.UpdatedAt = t.Options["ssh_password_hash"], s.Now()
				if h.Status == HostError && h.LastError != "" {
					h.LastError = ""
				}
				return tx.PutHost(h)
			})
		})
	}
	return fmt.Errorf("app: unknown task kind %q", t.Kind)
}

func (s *Service) hostSpec(h Host, network string) HostSpec {
	return HostSpec{HostID: h.ID, UserID: h.UserID, ShortID: h.ShortID, Hostname: "ws-" + h.ShortID,
		Image: h.Image, CPU: h.CPU, MemoryMB: h.MemoryMB, PIDs: h.PIDs, Network: network}
}

// networkFor is the network a host's container must be created with: none while the host is
// bound (its tunnel is then its only way out), else UNBOUND_HOST_NETWORK.
func (s *Service) networkFor(ctx context.Context, hostID string) (string, error) {
	if s.cfg.UnboundNetwork == "" || s.cfg.UnboundNetwork == "none" {
		return "none", nil
	}
	_, bound, err := s.boundEgress(ctx, hostID)
	if err != nil {
		return "", err
	}
	if bound {
		return "none", nil
	}
	return s.cfg.UnboundNetwork, nil
}

func (s *Service) createContainer(ctx context.Context, r *taskRun, h Host) error {
	if err := s.ensureImage(ctx, r, h.Image); err != nil {
		return err
	}
	return r.step(ctx, "create container", func() error {
		network, err := s.networkFor(ctx, h.ID)
		if err != nil {
			return err
		}
		rh, err := s.runtime.Create(ctx, s.hostSpec(h, network))
		if err != nil {
			return err
		}
		return s.store.Update(ctx, func(tx Tx) error {
			cur, err := tx.GetHost(h.ID)
			if err != nil {
				return err
			}
			cur.ContainerID, cur.UpdatedAt = rh.ContainerID, s.Now()
			return tx.PutHost(cur)
		})
	})
}

func (s *Service) startContainer(ctx context.Context, r *taskRun, h Host) error {
	network, err := s.networkFor(ctx, h.ID)
	if err != nil {
		return err
	}
	if rh, err := s.runtime.Inspect(ctx, h.ID); err == nil && rh.State != StateMissing && rh.Network != "" && rh.Network != network {
		// Bound or unbound while stopped (with UNBOUND_HOST_NETWORK=bridge): a container's
		// network is fixed when it is created, so it is created again, home kept. A bound
		// host never starts with a network besides its tunnel.
		if err := s.ensureImage(ctx, r, h.Image); err != nil {
			return err
		}
		if err := r.step(ctx, "recreate container with network "+network, func() error {
			if err := s.runtime.Remove(ctx, h.ID, true); err != nil {
				return err
			}
			_, err := s.runtime.Create(ctx, s.hostSpec(h, network))
			return err
		}); err != nil {
			return err
		}
	}
	err = r.step(ctx, "start container", func() error {
		err := s.runtime.Start(ctx, h.ID)
		if isRuntimeCode(err, CodeContainerMissing) {
			if err := s.ensureImage(ctx, r, h.Image); err != nil {
				return err
			}
			if _, err := s.runtime.Create(ctx, s.hostSpec(h, network)); err != nil {
				return err
			}
			return s.runtime.Start(ctx, h.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := r.step(ctx, "wait until the workspace answers", func() error {
		return s.runtime.WaitExecReady(ctx, h.ID)
	}); err != nil {
		return err
	}
	if !s.noTunnel {
		if _, bound, err := s.boundEgress(ctx, h.ID); err != nil {
			return err
		} else if bound {
			var at egressAttach
			if err := r.step(ctx, "attach egress tunnel", func() error {
				var err error
				at, err = s.attachBound(ctx, h.ID)
				return err
			}); err != nil {
				return err
			}
			s.reconcile.mu.Lock()
			s.reconcile.memo(h.ID).attachFail = ""
			s.reconcile.mu.Unlock()
			if at.pid > 0 {
				return s.verifyEgressStep(ctx, r, h, at)
			}
		}
	}
	return s.markRunning(ctx, h.ID, r.t.ID)
}

// verifyEgressStep checks the just attached egress from inside the container as a task
// step. A failed check fails the step, not the task: the host runs, marked unavailable
// with the reason (checkHost records that, and the event).
func (s *Service) verifyEgressStep(ctx context.Context, r *taskRun, h Host, at egressAttach) error {
	const name = "verify egress (connectivity, exit IP, DNS leak)"
	var skipped bool
	err := r.step(ctx, name, func() error {
		var err error
		skipped, err = s.checkHost(ctx, h, at, CheckTriggerStart, r.t.ID)
		return err
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if skipped {
		r.t.Steps[len(r.t.Steps)-1].Name = name + ": skipped, no check service configured"
		r.save(ctx)
	}
	if err != nil {
		s.log.Warn("egress check after start", "host", h.ID, "err", err)
	}
	return nil
}

func isRuntimeCode(err error, code ErrorCode) bool {
	var re *RuntimeError
	return errors.As(err, &re) && re.Code == code
}

func (s *Service) setHostStatus(ctx context.Context, hostID string, status HostState) error {
	return s.store.Update(ctx, func(tx Tx) error {
		h, err := tx.GetHost(hostID)
		if err != nil {
			return err
		}
		h.Status, h.UpdatedAt = status, s.Now()
		if status == HostStopped {
			h.UnavailableReason = "" // nothing runs, nothing is unavailable
		}
		return tx.PutHost(h)
	})
}
