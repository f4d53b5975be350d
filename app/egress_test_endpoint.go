package app

import (
	"context"
	"fmt"
	"time"
)

// TestEgress runs the egress checks of an egress IP from the server.
func (s *Service) TestEgress(ctx context.Context, p Principal, id string) (EgressTestResult, error) {
	if err := s.requireAdminWrite(ctx, p, "egress.test"); err != nil {
		return EgressTestResult{}, err
	}
	var e EgressIP
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		e, err = tx.GetEgress(id)
		return err
	})
	if err != nil {
		return EgressTestResult{}, err
	}
	start := time.Now()
	res, err := s.tunnel.Test(ctx, e)
	s.obs.EgressChecked("test", checkResult(res, err), time.Since(start))
	ev := s.event(p, "egress.test", ResultSuccess)
	ev.TargetType, ev.TargetID = "egress_ip", e.ID
	switch {
	case err != nil:
		ev.Result, ev.Message = ResultFailure, AsError(err).Message
	case !res.OK:
		ev.Result, ev.Message = ResultFailure, fmt.Sprintf("checks failed in %d ms", res.DurationMS)
	default:
		ev.Message = fmt.Sprintf("all checks passed in %d ms", res.DurationMS)
	}
	s.record(ctx, ev)
	return res, err
}
