package app

import (
	"context"
	"errors"
	"sync"
	"time"
)

func (s *Service) newTask(p Principal, kind, hostID, userID string) Task {
	return Task{ID: newID(), Kind: kind, State: TaskQueued, HostID: hostID, UserID: userID, ActorID: p.UserID,
		Steps: []TaskStep{}, CreatedAt: s.Now()}
}

// enqueue hands task ids to the workers. A full queue never blocks a request: the task is
// persisted and the workers' periodic sweep picks it up.
func (s *Service) enqueue(ids ...string) {
	for _, id := range ids {
		select {
		case s.queue <- id:
		default:
			s.log.Warn("task queue full; task will be picked up by the sweep", "task", id)
		}
	}
}

// Start recovers tasks a crash left behind and runs the workers until ctx ends. It returns a
// function that waits for the workers to stop.
func (s *Service) Start(ctx context.Context) (wait func(), err error) {
	var queued []string
	err = s.store.Update(ctx, func(tx Tx) error {
		queued = queued[:0]
		ts, err := tx.ListTasksByState(TaskRunning, TaskQueued)
		if err != nil {
			return err
		}
		now := s.Now()
		for _, t := range ts {
			if t.State == TaskQueued {
				queued = append(queued, t.ID)
				continue
			}
			t.State, t.FinishedAt = TaskFailed, &now
			t.Error = &TaskError{Code: CodeInterrupted, Message: "the server stopped while this task was running"}
			if err := tx.PutTask(t); err != nil {
				return err
			}
			if t.HostID != "" {
				if h, err := tx.GetHost(t.HostID); err == nil && h.ActiveTaskID == t.ID {
					h.ActiveTaskID, h.Status, h.LastError = "", HostError, t.Error.Message
					h.UpdatedAt = now
					if err := tx.PutHost(h); err != nil {
						return err
					}
				}
			}
			e := s.event(systemPrincipal(), "task.interrupted", ResultFailure)
			e.TargetType, e.TargetID, e.HostID, e.UserID = "task", t.ID, t.HostID, t.UserID
			if err := tx.AddEvent(&e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.enqueue(queued...)
	s.mu.Lock()
	s.bgCtx = ctx
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < s.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.sweep(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.flushTokenUseLoop(ctx)
	}()
	if s.cfg.ReconcileInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watch(ctx)
		}()
	}
	return func() { wg.Wait(); s.checks.Wait() }, nil
}

func (s *Service) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-s.queue:
			s.runTask(ctx, id)
		}
	}
}

// sweep re-queues persisted tasks that no worker holds (after a full queue).
func (s *Service) sweep(ctx context.Context) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			var ids []string
			_ = s.store.View(ctx, func(tx Tx) error {
				ts, err := tx.ListTasksByState(TaskQueued)
				for _, t := range ts {
					ids = append(ids, t.ID)
				}
				return err
			})
			s.enqueue(ids...)
			now := s.Now()
			if err := s.store.Update(ctx, func(tx Tx) error { return tx.PurgeRevocations(now) }); err != nil && ctx.Err() == nil {
				s.log.Warn("purging expired JWT revocations", "err", err)
			}
			s.ApplyRetention(ctx)
		}
	}
}

// claim marks a task running unless another worker holds it or it is not queued.
func (s *Service) claim(ctx context.Context, id string) (Task, bool) {
	s.mu.Lock()
	if s.running[id] {
		s.mu.Unlock()
		return Task{}, false
	}
	s.running[id] = true
	s.mu.Unlock()
	var t Task
	err := s.store.Update(ctx, func(tx Tx) error {
		var err error
		t, err = tx.GetTask(id)
		if err != nil {
			return err
		}
		if t.State != TaskQueued {
			return errTaskNotQueued
		}
		now := s.Now()
		t.State, t.StartedAt = TaskRunning, &now
		return tx.PutTask(t)
	})
	if err != nil {
		s.release(id)
		if !errors.Is(err, errTaskNotQueued) && ctx.Err() == nil {
			s.log.Error("claim task", "task", id, "err", err)
		}
		return Task{}, false
	}
	return t, true
}

var errTaskNotQueued = errors.New("task is not queued")

func (s *Service) release(id string) {
	s.mu.Lock()
	delete(s.running, id)
	s.mu.Unlock()
}

// taskRun is one execution of a task, persisting its progress steps.
type taskRun struct {
	s *Service
	t Task
}

func (r *taskRun) step(ctx context.Context, name string, fn func() error) error {
	now := r.s.Now()
	r.t.Steps = append(r.t.Steps, TaskStep{Name: name, State: "running", At: now})
	i := len(r.t.Steps) - 1 // fn may add notes after it (taskRun.note)
	r.save(ctx)
	err := fn()
	end := r.s.Now()
	r.t.Steps[i].End = &end
	if err != nil {
		r.t.Steps[i].State = "failed"
	} else {
		r.t.Steps[i].State = "done"
	}
	r.save(ctx)
	return err
}

func (r *taskRun) save(ctx context.Context) {
	t := r.t
	if err := r.s.store.Update(ctx, func(tx Tx) error { return tx.PutTask(t) }); err != nil {
		r.s.log.Warn("saving task progress", "task", t.ID, "err", err)
	}
}

func (s *Service) runTask(ctx context.Context, id string) {
	t, ok := s.claim(ctx, id)
	if !ok {
		return
	}
	defer s.release(id)
	r := &taskRun{s: s, t: t}
	err := s.execute(ctx, r)
	s.finish(ctx, r, err)
}

// finish records the outcome of a task on the task and its host, with an event.
func (s *Service) finish(ctx context.Context, r *taskRun, runErr error) {
	now := s.Now()
	t := r.t
	t.FinishedAt = &now
	if runErr != nil {
		t.State = TaskFailed
		t.Error = taskErrorOf(runErr)
	} else {
		t.State = TaskSucceeded
	}
	if t.StartedAt != nil {
		s.obs.TaskFinished(t.Kind, t.State.String(), now.Sub(*t.StartedAt))
	}
	err := s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
		if err := tx.PutTask(t); err != nil {
			return err
		}
		if t.HostID != "" && t.Kind != TaskHostPurge {
			h, err := tx.GetHost(t.HostID)
			if err == nil && h.ActiveTaskID == t.ID {
				h.ActiveTaskID, h.UpdatedAt = "", now
				if runErr != nil {
					h.Status, h.LastError = HostError, t.Error.Message
				} else {
					h.LastError = ""
				}
				if err := tx.PutHost(h); err != nil {
					return err
				}
			} else if err != nil && !isNotFound(err) {
				return err
			}
		}
		e := s.event(systemPrincipal(), t.Kind, ResultSuccess)
		e.ActorID = t.ActorID
		e.TargetType, e.TargetID, e.HostID, e.UserID = "task", t.ID, t.HostID, t.UserID
		if runErr != nil {
			e.Result, e.Message = ResultFailure, t.Error.Code.String()+": "+t.Error.Message
		} else {
			e.Message = "task succeeded"
		}
		return tx.AddEvent(&e)
	})
	if err != nil {
		s.log.Error("finishing task", "task", t.ID, "err", err)
	}
}

func taskErrorOf(err error) *TaskError {
	var re *RuntimeError
	if errors.As(err, &re) {
		return &TaskError{Code: re.Code, Message: re.Message}
	}
	ae := AsError(err)
	return &TaskError{Code: ae.Code, Message: ae.Message}
}

// TaskFilter narrows a task listing.
type TaskFilter struct {
	HostID string
	Limit  int
}

// ListTasks lists tasks newest first.
func (s *Service) ListTasks(ctx context.Context, p Principal, f TaskFilter) ([]Task, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	if err := checkLimit(f.Limit, MaxTaskLimit); err != nil {
		return nil, err
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	out := []Task{}
	err := s.store.View(ctx, func(tx Tx) error {
		ts, err := tx.ListTasks(f.HostID, f.Limit)
		for _, t := range ts {
			t.Options = nil
			out = append(out, t)
		}
		return err
	})
	return out, err
}

// GetTask returns one task. Users may read the tasks of their own hosts.
func (s *Service) GetTask(ctx context.Context, p Principal, id string) (Task, error) {
	if err := s.requireAuth(p); err != nil {
		return Task{}, err
	}
	var t Task
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		t, err = tx.GetTask(id)
		return err
	})
	if err != nil {
		return Task{}, err
	}
	if p.Role != RoleAdmin && p.Role != RoleViewer && t.UserID != p.UserID {
		return Task{}, notFound("task")
	}
	t.Options = nil
	return t, nil
}

// WaitTask polls until a task has finished or ctx ends (used by tests and the SSH gateway).
func (s *Service) WaitTask(ctx context.Context, id string) (Task, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var t Task
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			t, err = tx.GetTask(id)
			return err
		})
		if err != nil {
			return Task{}, err
		}
		if t.State == TaskSucceeded || t.State == TaskFailed {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-tick.C:
		}
	}
}
