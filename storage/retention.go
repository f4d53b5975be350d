package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// PurgeEventsBefore deletes up to max events (max <= 0: all) older than before, oldest
// first, with their index entries. It returns how many it deleted.
func (t *tx) PurgeEventsBefore(before time.Time, max int) (int, error) {
	recs := t.bucket(bEvents)
	limit := timeKey(before)
	type gone struct{ key, raw []byte }
	var doomed []gone
	c := recs.Cursor()
	for k, v := c.First(); k != nil && (max <= 0 || len(doomed) < max); k, v = c.Next() {
		if len(k) != eventKeyLen {
			return 0, errCorruptIndex("event", k)
		}
		if binary.BigEndian.Uint64(k[:8]) >= limit {
			break
		}
		doomed = append(doomed, gone{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, d := range doomed {
		var e app.Event
		if err := json.Unmarshal(d.raw, &e); err != nil {
			return 0, fmt.Errorf("storage: decode event %x: %w", d.key, err)
		}
		for _, ix := range eventIndexKeys(&e, d.key) {
			if err := t.bucket(ix.bucket).Delete(ix.key); err != nil {
				return 0, err
			}
		}
		if err := recs.Delete(d.key); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// PurgeTasksBefore deletes up to max finished tasks (max <= 0: all) that finished before
// before, oldest created first, with their index entries. Queued and running tasks stay.
func (t *tx) PurgeTasksBefore(before time.Time, max int) (int, error) {
	recs := t.bucket(bTasks)
	var doomed []app.Task
	c := t.bucket(bTasksByTime).Cursor()
	for k, _ := c.First(); k != nil && (max <= 0 || len(doomed) < max); k, _ = c.Next() {
		if len(k) < 8 {
			return 0, errCorruptIndex("task", k)
		}
		if binary.BigEndian.Uint64(k[:8]) >= timeKey(before) {
			break // created after the cut-off, so finished after it too
		}
		task, err := taskAt(recs, k, 0)
		if err != nil {
			return 0, err
		}
		if task.FinishedAt == nil || !task.FinishedAt.Before(before) ||
			(task.State != app.TaskSucceeded && task.State != app.TaskFailed) {
			continue
		}
		doomed = append(doomed, task)
	}
	for _, task := range doomed {
		byTime, byHost, byState := taskIndexKeys(task)
		for _, ix := range []struct {
			bucket, key []byte
		}{{bTasksByTime, byTime}, {bTasksByHost, byHost}, {bTasksByState, byState}} {
			if ix.key == nil {
				continue
			}
			if err := t.bucket(ix.bucket).Delete(ix.key); err != nil {
				return 0, err
			}
		}
		if err := recs.Delete([]byte(task.ID)); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}
