package app

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Host resource defaults and bounds.
const (
	DefaultCPU      = 1.0
	DefaultMemoryMB = 1024
	DefaultPIDs     = 512
	MinCPU, MaxCPU  = 0.1, 16.0
	MinMemoryMB     = 128
	MaxMemoryMB     = 65536
	MinPIDs         = 64
	MaxPIDs         = 32768
)

// CreateHostInput is the body of a host creation.
type CreateHostInput struct {
	UserID     string   `json:"user_id"`
	Image      string   `json:"image"`
	CPU        *float64 `json:"cpu"`
	MemoryMB   *int64   `json:"memory_mb"`
	PIDs       *int64   `json:"pids"`
	EgressIPID string   `json:"egress_ip_id"`
}

var imageRE = regexp.MustCompile(`^[a-z0-9]+([._/:@-][a-zA-Z0-9_.-]+)*$`)

// Validate checks bounds and fills defaults.
func (in *CreateHostInput) Validate(defaultImage string) error {
	if in.UserID == "" {
		return invalid("user_id", "user_id is required")
	}
	if in.Image == "" {
		in.Image = defaultImage
	}
	if len(in.Image) > 255 || !imageRE.MatchString(in.Image) {
		return invalid("image", "image must be a Docker image reference")
	}
	if in.CPU == nil {
		v := DefaultCPU
		in.CPU = &v
	}
	if !(*in.CPU >= MinCPU && *in.CPU <= MaxCPU) { // also refuses NaN
		return invalid("cpu", "cpu must be between %g and %g cores", MinCPU, MaxCPU)
	}
	if in.MemoryMB == nil {
		v := int64(DefaultMemoryMB)
		in.MemoryMB = &v
	}
	if *in.MemoryMB < MinMemoryMB || *in.MemoryMB > MaxMemoryMB {
		return invalid("memory_mb", "memory_mb must be between %d and %d", MinMemoryMB, MaxMemoryMB)
	}
	if in.PIDs == nil {
		v := int64(DefaultPIDs)
		in.PIDs = &v
	}
	if *in.PIDs < MinPIDs || *in.PIDs > MaxPIDs {
		return invalid("pids", "pids must be between %d and %d", MinPIDs, MaxPIDs)
	}
	return nil
}

// EgressRef names the egress IP a host is bound to.
type EgressRef struct {
	ID        string `json:"id"`
	BindingID string `json:"binding_id"`
	Label     string `json:"label"`
	IPAddress string `json:"ip_address"`
}

// HostView is a host as clients see it.
type HostView struct {
	ID           string    `json:"id"`
	ShortID      string    `json:"short_id"`
	UserID       string    `json:"user_id"`
	Username     string    `json:"username"`
	Image        string    `json:"image"`
	CPU          float64   `json:"cpu"`
	MemoryMB     int64     `json:"memory_mb"`
	PIDs         int64     `json:"pids"`
	Status       HostState `json:"status"`
	DesiredState HostState `json:"desired_state"`
	ActiveTaskID string    `json:"active_task_id,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	// UnavailableReason is set while Status is "unavailable": why the host's egress failed.
	UnavailableReason string `json:"unavailable_reason,omitempty"`
	// EgressCheck is the last egress check run inside the host's container, if any.
	EgressCheck   *HostEgressCheck `json:"egress_check,omitempty"`
	AccessCommand string           `json:"access_command"`
	Egress        *EgressRef       `json:"egress_ip"`
	CreatedAt     string           `json:"created_at"`
	UpdatedAt     string           `json:"updated_at"`
}

const timeFormat = "2006-01-02T15:04:05.999999999Z07:00"

func (s *Service) viewHost(tx Tx, h Host, users map[string]string) (HostView, error) {
	name, ok := users[h.UserID]
	if !ok {
		u, err := tx.GetUser(h.UserID)
		if err != nil && !isNotFound(err) {
			return HostView{}, err
		}
		name = u.Username
		if users != nil {
			users[h.UserID] = name
		}
	}
	v := HostView{ID: h.ID, ShortID: h.ShortID, UserID: h.UserID, Username: name, Image: h.Image, CPU: h.CPU,
		MemoryMB: h.MemoryMB, PIDs: h.PIDs, Status: h.Status, DesiredState: h.DesiredState,
		ActiveTaskID: h.ActiveTaskID, LastError: h.LastError, EgressCheck: h.EgressCheck,
		AccessCommand: s.accessCommand(name, h.ShortID),
		CreatedAt:     h.CreatedAt.Format(timeFormat), UpdatedAt: h.UpdatedAt.Format(timeFormat)}
	if h.Status == HostUnavailable {
		v.UnavailableReason = h.UnavailableReason
	}
	b, err := tx.GetBindingByHost(h.ID)
	if err == nil {
		ref := &EgressRef{ID: b.EgressIPID, BindingID: b.ID}
		if e, err := tx.GetEgress(b.EgressIPID); err == nil {
			ref.Label, ref.IPAddress = e.Label, e.IPAddress
		}
		v.Egress = ref
	} else if !isNotFound(err) {
		return HostView{}, err
	}
	return v, nil
}

func (s *Service) accessCommand(username, shortID string) string {
	cmd := fmt.Sprintf("ssh %s+%s@%s", username, shortID, s.cfg.PublicHost)
	if s.cfg.SSHProxyPort != 22 {
		cmd += " -p " + strconv.Itoa(s.cfg.SSHProxyPort)
	}
	return cmd
}

// HostCreated is the answer to a host creation.
type HostCreated struct {
	Host HostView `json:"host"`
	Task Task     `json:"task"`
}

// CreateHost records a host for a user and queues the task that creates its container.
func (s *Service) CreateHost(ctx context.Context, p Principal, in CreateHostInput) (HostCreated, error) {
	if err := s.requireAdminWrite(ctx, p, "host.create"); err != nil {
		return HostCreated{}, err
	}
	custom := in.Image != "" && in.Image != s.cfg.ManagedImage
	if err := in.Validate(s.cfg.ManagedImage); err != nil {
		return HostCreated{}, err
	}
	now := s.Now()
	var out HostCreated
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := tx.GetUser(in.UserID); err != nil {
			return withMessage(err, "user not found")
		}
		h := Host{ID: newID(), ShortID: newShortID(), UserID: in.UserID, Image: in.Image, CustomImage: custom, CPU: *in.CPU,
			MemoryMB: *in.MemoryMB, PIDs: *in.PIDs, Status: HostCreating, DesiredState: HostRunning,
			CreatedAt: now, UpdatedAt: now}
		t := s.newTask(p, TaskHostCreate, h.ID, h.UserID)
		h.ActiveTaskID = t.ID
		if err := tx.PutHost(h); err != nil {
			return err
		}
		if in.EgressIPID != "" {
			if _, err := tx.GetEgress(in.EgressIPID); err != nil {
				return withMessage(err, "egress IP not found")
			}
			if err := tx.PutBinding(Binding{ID: newID(), HostID: h.ID, EgressIPID: in.EgressIPID, CreatedAt: now}); err != nil {
				return err
			}
		}
		if err := tx.PutTask(t); err != nil {
			return err
		}
		e := s.event(p, "host.create", ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID, e.Message = "host", h.ID, h.ID, h.UserID, h.ShortID
		if err := tx.AddEvent(&e); err != nil {
			return err
		}
		v, err := s.viewHost(tx, h, nil)
		out = HostCreated{Host: v, Task: t}
		return err
	})
	if err != nil {
		return HostCreated{}, err
	}
	s.enqueue(out.Task.ID)
	return out, nil
}

// ListHosts lists every host (admins, viewers).
func (s *Service) ListHosts(ctx context.Context, p Principal) ([]HostView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, err
	}
	return s.listHosts(ctx, "")
}

// hostListCache keeps the full host listing of one store generation.
type hostListCache struct {
	mu    sync.Mutex
	gen   uint64
	views []HostView // nil: nothing cached
}

// ListHostsVersioned is ListHosts for doors that cache their encoding of the list: it also
// returns a version, and two calls returning the same non-zero version return the same list.
// When the store counts its writes (Generational) the list is kept until the next write, so
// repeated listings cost no store reads; otherwise the version is 0. The returned slice is
// shared with other callers and must not be modified.
func (s *Service) ListHostsVersioned(ctx context.Context, p Principal) ([]HostView, uint64, error) {
	if err := s.requireAdminRead(p); err != nil {
		return nil, 0, err
	}
	g, ok := s.base.(Generational)
	if !ok {
		hs, err := s.listHosts(ctx, "")
		return hs, 0, err
	}
	c := &s.hostList
	// Held while listing, so a burst of requests after a write lists once, not once each.
	c.mu.Lock()
	defer c.mu.Unlock()
	gen := g.Generation() + 1 // read before listing: the list is at least this new; never 0
	if c.views != nil && c.gen == gen {
		return c.views, gen, nil
	}
	hs, err := s.listHosts(ctx, "")
	if err != nil {
		return nil, 0, err
	}
	c.gen, c.views = gen, hs
	return hs, gen, nil
}

// ListOwnHosts lists the caller's hosts.
func (s *Service) ListOwnHosts(ctx context.Context, p Principal) ([]HostView, error) {
	if err := s.requireAuth(p); err != nil {
		return nil, err
	}
	return s.listHosts(ctx, p.UserID)
}

func (s *Service) listHosts(ctx context.Context, userID string) ([]HostView, error) {
	out := []HostView{}
	err := s.store.View(ctx, func(tx Tx) error {
		var hs []Host
		var err error
		if userID == "" {
			hs, err = tx.ListHosts()
		} else {
			hs, err = tx.ListHostsByUser(userID)
		}
		if err != nil {
			return err
		}
		out = make([]HostView, 0, len(hs))
		users := map[string]string{}
		for _, h := range hs {
			v, err := s.viewHost(tx, h, users)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// GetHost returns one host. A user may read only their own; another's is not found.
func (s *Service) GetHost(ctx context.Context, p Principal, id string) (HostView, error) {
	if err := s.requireAdminRead(p); err != nil {
		return HostView{}, err
	}
	return s.getHost(ctx, id, "")
}

// GetOwnHost returns one of the caller's hosts.
func (s *Service) GetOwnHost(ctx context.Context, p Principal, id string) (HostView, error) {
	if err := s.requireAuth(p); err != nil {
		return HostView{}, err
	}
	return s.getHost(ctx, id, p.UserID)
}

func (s *Service) getHost(ctx context.Context, id, owner string) (HostView, error) {
	var out HostView
	err := s.store.View(ctx, func(tx Tx) error {
		h, err := tx.GetHost(id)
		if err != nil {
			return err
		}
		if owner != "" && h.UserID != owner {
			return notFound("host")
		}
		out, err = s.viewHost(tx, h, nil)
		return err
	})
	return out, err
}

// HostActionResult is the answer to a host action: the queued task, and for a password
// rotation the new password, shown once.
type HostActionResult struct {
	Task        Task   `json:"task"`
	SSHPassword string `json:"ssh_password,omitempty"`
}

// HostAction queues start, stop, rebuild, delete or rotate-ssh-password for a host.
func (s *Service) HostAction(ctx context.Context, p Principal, hostID, kind string, keepHome bool) (HostActionResult, error) {
	if err := s.requireAdminWrite(ctx, p, kind); err != nil {
		return HostActionResult{}, err
	}
	return s.hostAction(ctx, p, hostID, kind, keepHome, "")
}

// RebuildOwnHost queues a rebuild of one of the caller's hosts.
func (s *Service) RebuildOwnHost(ctx context.Context, p Principal, hostID string) (HostActionResult, error) {
	if err := s.requireSelfWrite(ctx, p, TaskHostRebuild); err != nil {
		return HostActionResult{}, err
	}
	return s.hostAction(ctx, p, hostID, TaskHostRebuild, false, p.UserID)
}

// StartOwnHost queues a start of one of the caller's hosts (used by the SSH gateway).
func (s *Service) StartOwnHost(ctx context.Context, p Principal, hostID string) (HostActionResult, error) {
	if err := s.requireSelfWrite(ctx, p, TaskHostStart); err != nil {
		return HostActionResult{}, err
	}
	return s.hostAction(ctx, p, hostID, TaskHostStart, false, p.UserID)
}

func (s *Service) hostAction(ctx context.Context, p Principal, hostID, kind string, keepHome bool, owner string) (HostActionResult, error) {
	var res HostActionResult
	var pwHash string
	switch kind {
	case TaskHostStart, TaskHostStop, TaskHostRebuild, TaskHostDelete:
	case TaskHostRotateSSH:
		res.SSHPassword = randomPassword(20)
		h, err := bcrypt.GenerateFromPassword([]byte(res.SSHPassword), s.cfg.BcryptCost)
		if err != nil {
			return HostActionResult{}, err
		}
		pwHash = string(h)
	default:
		return HostActionResult{}, fmt.Errorf("app: unknown host action %q", kind)
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		h, err := tx.GetHost(hostID)
		if err != nil {
			return err
		}
		if owner != "" && h.UserID != owner {
			return notFound("host")
		}
		if err := s.checkIdle(tx, h); err != nil {
			return err
		}
		t := s.newTask(p, kind, h.ID, h.UserID)
		switch kind {
		case TaskHostStart:
			h.DesiredState, h.Status = HostRunning, HostStarting
		case TaskHostStop:
			h.DesiredState, h.Status = HostStopped, HostStopping
		case TaskHostRebuild:
			h.Status = HostRebuilding
		case TaskHostDelete:
			h.Status, h.DesiredState = HostDeleting, HostDeleted
			if keepHome {
				t.Options = map[string]string{taskOptionKeepHome: "true"}
			}
		case TaskHostRotateSSH:
			t.Options = map[string]string{"ssh_password_hash": pwHash}
		}
		h.ActiveTaskID, h.UpdatedAt = t.ID, s.Now()
		if err := tx.PutHost(h); err != nil {
			return err
		}
		if err := tx.PutTask(t); err != nil {
			return err
		}
		e := s.event(p, kind, ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID, e.Message = "host", h.ID, h.ID, h.UserID, "task "+t.ID
		res.Task = t
		return tx.AddEvent(&e)
	})
	if err != nil {
		return HostActionResult{}, err
	}
	if kind == TaskHostDelete {
		s.endSessions(ctx, p, hostSessions(hostID), EndHostDeleted)
	}
	s.enqueue(res.Task.ID)
	res.Task.Options = nil // never echo option values (they may hold hashes)
	return res, nil
}

// checkIdle refuses a second action while one is queued or running for the host.
func (s *Service) checkIdle(tx Tx, h Host) error {
	if h.ActiveTaskID == "" {
		return nil
	}
	t, err := tx.GetTask(h.ActiveTaskID)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if t.State == TaskQueued || t.State == TaskRunning {
		return conflict(CodeHostBusy, "host has a %s task %s in progress; wait for it to finish", t.Kind, t.ID)
	}
	return nil
}

func withMessage(err error, msg string) error {
	if isNotFound(err) {
		return &Error{Kind: KindNotFound, Code: CodeNotFound, Message: msg}
	}
	return err
}

// HostSSHPasswordOK reports whether pw is the host's current SSH password.
func (s *Service) HostSSHPasswordOK(h Host, pw string) bool {
	return h.SSHPasswordHash != "" && bcrypt.CompareHashAndPassword([]byte(h.SSHPasswordHash), []byte(pw)) == nil
}
