package app

import (
	"context"
	"fmt"
)

// retentionBatch bounds one purge transaction, so a first purge of a large log never holds
// the single writer for long.
const retentionBatch = 1000

// ApplyRetention deletes audit events older than Config.EventRetention and finished tasks
// older than Config.TaskRetention, in batches, and records what it removed as an event.
// A zero retention keeps everything. The task sweeper calls it every 30 seconds.
func (s *Service) ApplyRetention(ctx context.Context) (events, tasks int) {
	purge := func(what string, keep func() bool, fn func(Tx) (int, error)) int {
		if !keep() {
			return 0
		}
		total := 0
		for ctx.Err() == nil {
			var n int
			err := s.store.Update(ctx, func(tx Tx) error {
				var err error
				n, err = fn(tx)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("applying retention", "what", what, "err", err)
				}
				break
			}
			total += n
			if n < retentionBatch {
				break
			}
		}
		return total
	}
	now := s.Now()
	events = purge("events", func() bool { return s.cfg.EventRetention > 0 }, func(tx Tx) (int, error) {
		return tx.PurgeEventsBefore(now.Add(-s.cfg.EventRetention), retentionBatch)
	})
	tasks = purge("tasks", func() bool { return s.cfg.TaskRetention > 0 }, func(tx Tx) (int, error) {
		return tx.PurgeTasksBefore(now.Add(-s.cfg.TaskRetention), retentionBatch)
	})
	if events+tasks == 0 {
		return 0, 0
	}
	e := s.event(systemPrincipal(), "retention.purge", ResultSuccess)
	e.Message = fmt.Sprintf("removed %d events older than %s and %d finished tasks older than %s",
		events, s.cfg.EventRetention, tasks, s.cfg.TaskRetention)
	s.record(ctx, e)
	return events, tasks
}
