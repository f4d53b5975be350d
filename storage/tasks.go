package storage

import (
	"bytes"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// taskSuffix is created(8) id: the tail of every task index key, in creation order.
func taskSuffix(t app.Task) []byte {
	return join(u64(timeKey(t.CreatedAt)), []byte(t.ID))
}

// taskIndexKeys are the task's keys in tasks_by_time, tasks_by_host and tasks_by_state
// (nil where the task has no value to index).
func taskIndexKeys(t app.Task) (byTime, byHost, byState []byte) {
	s := taskSuffix(t)
	byTime = s
	if t.HostID != "" {
		byHost = join(prefix(t.HostID), s)
	}
	if t.State != "" {
		byState = join(prefix(string(t.State)), s)
	}
	return
}

func (t *tx) GetTask(id string) (app.Task, error) {
	return getRecord[app.Task](t.bucket(bTasks), id, "task")
}

func (t *tx) PutTask(task app.Task) error {
	if err := requireID("task", task.ID); err != nil {
		return err
	}
	recs := t.bucket(bTasks)
	old, exists, err := getOld[app.Task](recs, task.ID, "task")
	if err != nil {
		return err
	}
	var oTime, oHost, oState []byte
	if exists {
		oTime, oHost, oState = taskIndexKeys(old)
	}
	nTime, nHost, nState := taskIndexKeys(task)
	if err := reindex(t.bucket(bTasksByTime), oTime, nTime, empty); err != nil {
		return err
	}
	if err := reindex(t.bucket(bTasksByHost), oHost, nHost, empty); err != nil {
		return err
	}
	if err := reindex(t.bucket(bTasksByState), oState, nState, empty); err != nil {
		return err
	}
	return putRecord(recs, task.ID, task)
}

// ListTasks returns tasks newest first (by CreatedAt, then id), at most limit (<= 0: all),
// only those of hostID unless it is "".
func (t *tx) ListTasks(hostID string, limit int) ([]app.Task, error) {
	idx := t.bucket(bTasksByTime)
	var p []byte
	if hostID != "" {
		idx, p = t.bucket(bTasksByHost), prefix(hostID)
	}
	recs := t.bucket(bTasks)
	out := make([]app.Task, 0)
	c := idx.Cursor()
	for k := lastWithPrefix(c, p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Prev() {
		if limit > 0 && len(out) >= limit {
			break
		}
		task, err := taskAt(recs, k, len(p))
		if err != nil {
			return nil, err
		}
		out = append(out, task)
	}
	return out, nil
}

// ListTasksByState returns the tasks in any of states, oldest first (by CreatedAt, then id).
func (t *tx) ListTasksByState(states ...app.TaskState) ([]app.Task, error) {
	idx := t.bucket(bTasksByState)
	var suffixes [][]byte
	seen := map[app.TaskState]bool{}
	for _, st := range states {
		if st == "" || seen[st] {
			continue
		}
		seen[st] = true
		p := prefix(string(st))
		c := idx.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			suffixes = append(suffixes, bytes.Clone(k[len(p):]))
		}
	}
	slices.SortFunc(suffixes, bytes.Compare)
	recs := t.bucket(bTasks)
	out := make([]app.Task, 0, len(suffixes))
	for _, s := range suffixes {
		task, err := taskAt(recs, s, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, task)
	}
	return out, nil
}

// taskAt loads the task named by index key k, whose created(8) id suffix starts at off.
func taskAt(recs *bolt.Bucket, k []byte, off int) (app.Task, error) {
	if len(k) < off+8 {
		return app.Task{}, errCorruptIndex("task", k)
	}
	return getRecord[app.Task](recs, string(k[off+8:]), "task")
}
