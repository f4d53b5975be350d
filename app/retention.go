package app

import (
	"context"
	"fmt"
	"time"
)

// retentionBatch bounds one purge transaction, so a first purge of a large log never holds
// the single writer for long.
const retentionBatch = 1000

// ApplyRetention deletes audit events older than Config.EventRetention and finished tasks
// older than Config.TaskRetention, in batches, and records what it removed as an event.
// A zero retention keeps everything. The task sweeper calls it every 30 seconds.
func (s *Service) ApplyRetention(ctx context.Context) (events, tasks int) {
	now := s.Now()
	// purge deletes, a batch per transaction, what fn finds older than now-keep.
	purge := func(what string, keep time.Duration, fn func(tx Tx, before time.Time) (int, error)) int {
		total := 0
		for keep > 0 && ctx.Err() == nil {
			var n int
			err := s.store.Update(ctx, func(tx Tx) error {
				var err error
				n, err = fn(tx, now.Add(-keep))
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
	events = purge("events", s.cfg.EventRetention, func(tx Tx, before time.Time) (int, error) {
		return tx.PurgeEventsBefore(before, retentionBatch)
	})
	tasks = purge("tasks", s.cfg.TaskRetention, func(tx Tx, before time.Time) (int, error) {
		return tx.PurgeTasksBefore(before, retentionBatch)
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
