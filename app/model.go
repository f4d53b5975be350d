package app

import (
	"encoding/json"
	"time"
)

// Role is what an account may do: administer everything, read everything, or use its own.
type Role string

func (r Role) String() string { return string(r) }

// Roles.
const (
	RoleAdmin  Role = "admin"
	RoleViewer Role = "viewer"
	RoleUser   Role = "user"
)

// UserStatus is whether an account may sign in.
type UserStatus string

func (s UserStatus) String() string { return string(s) }

// User statuses.
const (
	UserActive   UserStatus = "active"
	UserDisabled UserStatus = "disabled"
	UserExpired  UserStatus = "expired"
)

// User is an account. PasswordHash and Version never leave the service.
type User struct {
	ID           string     `json:"id"`
	Username     string     `json:"username"`
	Role         Role       `json:"role"`
	Status       UserStatus `json:"status"`
	ExpiresAt    *time.Time `json:"expires_at"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	PasswordHash string     `json:"password_hash,omitempty"`
	// Version is bumped whenever outstanding JWTs must die (disable, password change, delete).
	Version int64 `json:"version"`
}

// SSHKey is a public key that may log a user in over SSH.
type SSHKey struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	Name        string    `json:"name"`
	PublicKey   string    `json:"public_key"`
	Fingerprint string    `json:"fingerprint"`
	Type        string    `json:"type"`
	Source      string    `json:"source"` // admin, self, generated
	CreatedAt   time.Time `json:"created_at"`
}

// Tunnel types of an egress IP.
const (
	TunnelWireGuard = "wireguard"
	TunnelProxy     = "proxy"
)

// EgressIP is an address a host's traffic leaves through.
type EgressIP struct {
	ID             string          `json:"id"`
	Label          string          `json:"label"`
	IPAddress      string          `json:"ip_address"`
	TunnelType     string          `json:"tunnel_type"`
	Provider       string          `json:"provider"`
	WGEndpoint     string          `json:"wg_endpoint,omitempty"`
	WGPublicKey    string          `json:"wg_public_key,omitempty"`
	WGPrivateKey   string          `json:"wg_private_key,omitempty"`
	WGPresharedKey string          `json:"wg_preshared_key,omitempty"`
	WGAllowedIPs   string          `json:"wg_allowed_ips,omitempty"`
	WGDNSServer    string          `json:"wg_dns_server,omitempty"`
	WGPeerAddress  string          `json:"wg_peer_address,omitempty"`
	ProxyConfig    json.RawMessage `json:"proxy_config,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// HostState is a host's status, or the state it is meant to be in (its desired state:
// running, stopped or deleted).
type HostState string

func (s HostState) String() string { return string(s) }

// Host statuses.
const (
	HostPending    HostState = "pending"
	HostCreating   HostState = "creating"
	HostRunning    HostState = "running"
	HostStarting   HostState = "starting"
	HostStopping   HostState = "stopping"
	HostStopped    HostState = "stopped"
	HostRebuilding HostState = "rebuilding"
	HostDeleting   HostState = "deleting"
	HostError      HostState = "error"
	// HostUnavailable is a running host whose egress failed: its tunnel could not be
	// attached or it failed the checks run from inside its container. UnavailableReason
	// says why; a later attach and passing check make it running again.
	HostUnavailable HostState = "unavailable"
	// HostDeleted is only a desired state: the host is on its way out.
	HostDeleted HostState = "deleted"
)

// Host is a user's workspace container.
type Host struct {
	ID      string `json:"id"`
	ShortID string `json:"short_id"`
	UserID  string `json:"user_id"`
	Image   string `json:"image"`
	// CustomImage is true when the host was created with an explicit image; otherwise a
	// rebuild moves it to the server's current managed image.
	CustomImage     bool      `json:"custom_image,omitempty"`
	CPU             float64   `json:"cpu"`
	MemoryMB        int64     `json:"memory_mb"`
	PIDs            int64     `json:"pids"`
	Status          HostState `json:"status"`
	DesiredState    HostState `json:"desired_state"` // running, stopped or deleted
	ContainerID     string    `json:"container_id,omitempty"`
	ActiveTaskID    string    `json:"active_task_id,omitempty"`
	LastError       string    `json:"last_error,omitempty"`
	SSHPasswordHash string    `json:"ssh_password_hash,omitempty"`
	// UnavailableReason is why the host is unavailable (Status HostUnavailable): its
	// egress could not be attached or failed its check. Cleared by a passing check, an
	// unbind or a stop; shown to clients only while the status is unavailable.
	UnavailableReason string `json:"unavailable_reason,omitempty"`
	// EgressCheck is the last verification of the host's egress from inside its container.
	EgressCheck *HostEgressCheck `json:"egress_check,omitempty"`
	CreatedAt   time.Time        `json:"created_at"`
	UpdatedAt   time.Time        `json:"updated_at"`
}

// HostEgressCheck is the outcome of the last egress check run inside a host's container.
type HostEgressCheck struct {
	OK         bool          `json:"ok"`
	EgressIPID string        `json:"egress_ip_id"`
	Trigger    string        `json:"trigger"` // start, bind, reattach, recheck, stall
	CheckedAt  time.Time     `json:"checked_at"`
	DurationMS int64         `json:"duration_ms"`
	Checks     []EgressCheck `json:"checks"`
}

// Binding ties a host to the egress IP its traffic leaves through. A host has at most one.
type Binding struct {
	ID         string    `json:"id"`
	HostID     string    `json:"host_id"`
	EgressIPID string    `json:"egress_ip_id"`
	CreatedAt  time.Time `json:"created_at"`
}

// TaskState is where a task is in its life.
type TaskState string

func (s TaskState) String() string { return string(s) }

// Task states.
const (
	TaskQueued    TaskState = "queued"
	TaskRunning   TaskState = "running"
	TaskSucceeded TaskState = "succeeded"
	TaskFailed    TaskState = "failed"
)

// Task kinds.
const (
	TaskHostCreate      = "host.create"
	TaskHostStart       = "host.start"
	TaskHostStop        = "host.stop"
	TaskHostRebuild     = "host.rebuild"
	TaskHostDelete      = "host.delete"
	TaskHostRotateSSH   = "host.rotate_ssh_password"
	TaskHostPurge       = "host.purge"
	TaskHostPurgeKeep   = "host.purge_keep_home"
	taskOptionKeepHome  = "keep_home"
	taskOptionAttempted = "attempted"
)

// TaskStep is one progress step of a task.
type TaskStep struct {
	Name  string     `json:"name"`
	State string     `json:"state"` // running, done, failed
	At    time.Time  `json:"at"`
	End   *time.Time `json:"ended_at,omitempty"`
}

// TaskError is why a task failed.
type TaskError struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Task is a persisted unit of asynchronous work.
type Task struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	State      TaskState         `json:"state"`
	HostID     string            `json:"host_id,omitempty"`
	UserID     string            `json:"user_id,omitempty"`
	ActorID    string            `json:"actor_id,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	Steps      []TaskStep        `json:"steps"`
	Error      *TaskError        `json:"error,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at,omitempty"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
}

// Event results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultDenied  = "denied"
)

// Event is an audit record.
type Event struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	Action     string    `json:"type"`
	Result     string    `json:"result"`
	ActorID    string    `json:"actor_id,omitempty"`
	ActorName  string    `json:"actor_name,omitempty"`
	AuthMethod string    `json:"auth_method,omitempty"`
	TokenID    string    `json:"token_id,omitempty"`
	TokenName  string    `json:"token_name,omitempty"`
	SourceIP   string    `json:"source_ip,omitempty"`
	TargetType string    `json:"target_type,omitempty"`
	TargetID   string    `json:"target_id,omitempty"`
	UserID     string    `json:"user_id,omitempty"`
	HostID     string    `json:"host_id,omitempty"`
	Message    string    `json:"message,omitempty"`
	// Count is how many requests an aggregated event stands for (token.use); 0 for the rest.
	Count int `json:"count,omitempty"`
	// RequestID is the id of the REST request that caused the event (its X-Request-Id).
	RequestID string `json:"request_id,omitempty"`
}

// EventQuery filters events. Results are newest first.
type EventQuery struct {
	Limit  int
	UserID string
	HostID string
	Type   string
	Since  time.Time // inclusive; zero for unbounded
	Until  time.Time // inclusive; zero for unbounded
	Cursor string    // from a previous page's NextCursor
}

// EventPage is one page of events.
type EventPage struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// AccessToken is a long-lived API credential. Only a hash of its value is stored.
type AccessToken struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Hash       string     `json:"hash,omitempty"`
	Hint       string     `json:"hint"`
	Write      bool       `json:"write"`
	Active     bool       `json:"active"`
	ExpiresAt  *time.Time `json:"expires_at"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	LastUsedIP string     `json:"last_used_ip,omitempty"`
}
