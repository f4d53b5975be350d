package app

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

// Clock tells the time; tests inject their own.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// Config holds the service's tunables.
type Config struct {
	JWTSecret    []byte
	JWTIssuer    string
	JWTTTL       time.Duration
	BcryptCost   int
	ManagedImage string
	// ImagePullPolicy is when a host's image is pulled before its container is created:
	// PullMissing (the default, ""), PullAlways or PullNever. It needs a Runtime that is an
	// ImagePuller; with another runtime nothing is pulled.
	ImagePullPolicy string
	PublicHost      string // host name users connect to (access commands)
	SSHProxyPort    int
	UnboundNetwork  string // none or bridge
	StopTimeout     time.Duration
	Workers         int
	// ReconcileInterval is how often the reconciler runs besides engine events; 0 means
	// ReconcileInterval (30s). Negative disables the background reconciler and expiry
	// scanner (tests call Reconcile and ExpireUsers themselves).
	ReconcileInterval time.Duration
	// TokenMaxLifetime caps access-token expiry; 0 allows "never".
	TokenMaxLifetime time.Duration
	// TokenHashKey keys the HMAC under which access-token values are stored.
	TokenHashKey []byte
	// EventRetention is how long audit events are kept; 0 keeps them forever.
	EventRetention time.Duration
	// TaskRetention is how long finished tasks are kept; 0 keeps them forever.
	TaskRetention time.Duration
	// EgressRecheckInterval is how often the reconciler checks again, from inside its
	// container, the egress of every running host with a bound egress, so a tunnel that dies
	// under a running container marks the host unavailable (and a later pass clears it).
	// Each host is checked at its own moment of the interval (spread, not all at once), at
	// the first reconcile pass after it. 0 means HostRecheckInterval; negative disables the
	// checks of healthy hosts (an unavailable host is still checked again every
	// HostRecheckInterval, or every EgressRecheckInterval when that is shorter).
	EgressRecheckInterval time.Duration
	// TokenUseFlushInterval is how often the access-token usage counted in memory (per token
	// and minute) is written, in one transaction; 0 means TokenUseFlushInterval (5s);
	// negative writes it only on FlushTokenUse and when Start's context ends.
	TokenUseFlushInterval time.Duration
	// MaxSessionsPerUser caps a user's concurrent workspace sessions (shells, commands,
	// sftp) over every door and connection (SSH_MAX_SESSIONS_PER_USER); 0: no limit.
	MaxSessionsPerUser int
	// FeedBuffer is how many change-feed items a subscriber may have waiting before it is
	// dropped as behind; 0 means FeedBuffer (1024).
	FeedBuffer int
}

// Deps are the parts the service stands on.
type Deps struct {
	Store   Store
	Runtime Runtime
	// Tunnel is the egress room; nil means none (NoTunnel: egress tests answer 503, bound
	// hosts are neither attached nor checked).
	Tunnel Tunnel
	Clock  Clock
	Logger *slog.Logger
	// Observer is told of sessions, failed sign-ins, tasks, egress checks and store
	// transactions (the process's metrics); nil: nobody.
	Observer Observer
}

// Service is the one service layer. All doors call it.
type Service struct {
	cfg       Config
	store     Store // base wrapped by observedStore
	base      Store // the store as given (Snapshotter, Generational)
	obs       Observer
	runtime   Runtime
	tunnel    Tunnel
	noTunnel  bool // built without an egress room (Deps.Tunnel nil): bound hosts are neither attached nor checked
	clock     Clock
	log       *slog.Logger
	throttle  *loginThrottle
	queue     chan string
	tokenUse  *tokenUseTracker
	reconcile *reconcileState
	// dummyHash is compared against when a username does not exist, so a miss costs the
	// same time as a wrong password.
	dummyHash []byte

	mu      sync.Mutex
	running map[string]bool // task ids being executed by this process

	hostList hostListCache // the full host listing, for ListHostsVersioned

	sessions   *sessionRegistry // open sessions of every door
	feed       *feedBroker      // the change feed (feed.go)
	expiryKick chan struct{}    // an account's expiry was set or changed

	imagePulls pullLocks // one pull of an image at a time

	bgCtx    context.Context // set by Start: background work ends with it (guarded by mu)
	checks   sync.WaitGroup  // background egress checks
	checkSem chan struct{}   // bounds them
}

// New builds a Service. Call Start to run its task workers.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Store == nil {
		return nil, fmt.Errorf("app: a store is required")
	}
	if len(cfg.JWTSecret) < 32 {
		return nil, fmt.Errorf("app: JWT secret must be at least 32 bytes")
	}
	if cfg.JWTIssuer == "" {
		cfg.JWTIssuer = "cloud-cli-proxy"
	}
	if cfg.JWTTTL <= 0 {
		cfg.JWTTTL = 12 * time.Hour
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = 10
	}
	if cfg.ManagedImage == "" {
		cfg.ManagedImage = "cloud-cli-proxy/managed:latest"
	}
	if cfg.PublicHost == "" {
		cfg.PublicHost = "localhost"
	}
	if cfg.SSHProxyPort == 0 {
		cfg.SSHProxyPort = 2222
	}
	if cfg.UnboundNetwork == "" {
		cfg.UnboundNetwork = "none"
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = ReconcileInterval
	}
	if cfg.EgressRecheckInterval == 0 {
		cfg.EgressRecheckInterval = HostRecheckInterval
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if len(cfg.TokenHashKey) == 0 {
		cfg.TokenHashKey = cfg.JWTSecret
	}
	if d.Clock == nil {
		d.Clock = SystemClock{}
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Runtime == nil {
		d.Runtime = NoRuntime{}
	}
	if d.Observer == nil {
		d.Observer = nopObserver{}
	}
	noTunnel := d.Tunnel == nil
	if noTunnel {
		d.Tunnel = NoTunnel{}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not-a-real-password"), cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("app: bcrypt cost %d: %w", cfg.BcryptCost, err)
	}
	feed := newFeedBroker()
	return &Service{
		dummyHash: dummy,
		feed:      feed,
		cfg:       cfg, store: observedStore{Store: d.Store, obs: d.Observer, feed: feed}, base: d.Store, obs: d.Observer,
		runtime: d.Runtime, tunnel: d.Tunnel, noTunnel: noTunnel, clock: d.Clock, log: d.Logger,
		throttle:   newLoginThrottle(),
		queue:      make(chan string, 4096),
		tokenUse:   newTokenUseTracker(),
		reconcile:  newReconcileState(),
		running:    map[string]bool{},
		sessions:   newSessionRegistry(d.Observer),
		expiryKick: make(chan struct{}, 1),
		checkSem:   make(chan struct{}, hostCheckConcurrency),
	}, nil
}

// Config returns the service's configuration (without secrets' use being implied).
func (s *Service) Config() Config { return s.cfg }

// Now is the service clock.
func (s *Service) Now() time.Time { return s.clock.Now().UTC() }

// Principal is who is calling, however they came in.
type Principal struct {
	UserID   string
	Username string
	Role     Role
	// Method is how they authenticated.
	Method    AuthMethod
	JTI       string
	JWTExpiry time.Time
	TokenID   string
	TokenName string
	// TokenWrite is false for a read-only access token.
	TokenWrite bool
	SourceIP   string
	// KeyFP is the SHA256 fingerprint of the SSH key that signed in (ssh_key).
	KeyFP string
	// Cred is a digest of the secret a password sign-in checked (ssh_password,
	// ssh_host_password): LoginAllowed sees from it whether that secret changed since.
	Cred string
	// CredHost is the host whose SSH password signed in (ssh_host_password).
	CredHost string
	// TokenExpiresAt is when the access token it signed in with expires (zero: never).
	TokenExpiresAt time.Time
}

// AuthMethod is how a principal signed in.
type AuthMethod string

func (m AuthMethod) String() string { return string(m) }

// Authentication methods (Principal.Method).
const (
	MethodPassword        AuthMethod = "password"          // REST login or bootstrap with the account password
	MethodJWT             AuthMethod = "jwt"               // a JWT issued by a login
	MethodToken           AuthMethod = "token"             // an access token
	MethodSSHPassword     AuthMethod = "ssh_password"      // an SSH door with the account password
	MethodSSHHostPassword AuthMethod = "ssh_host_password" // the gateway with a host's SSH password
	MethodSSHKey          AuthMethod = "ssh_key"           // an SSH door with a registered key
	MethodSSH             AuthMethod = "ssh"               // an SSH sign-in that failed (audit only)
	MethodSystem          AuthMethod = "system"            // the server's own work
	MethodAnonymous       AuthMethod = "anonymous"         // not signed in
)

// systemPrincipal is the principal of the server's own background work.
func systemPrincipal() Principal {
	return Principal{Username: "system", Role: RoleAdmin, Method: "system"}
}

// Anonymous returns the principal of an unauthenticated caller from ip.
func Anonymous(ip string) Principal { return Principal{Method: "anonymous", SourceIP: ip} }

// IsAuthenticated reports whether p names a user.
func (p Principal) IsAuthenticated() bool { return p.UserID != "" || p.Method == "system" }

// CanWrite reports whether p's credential allows mutations at all.
func (p Principal) CanWrite() bool {
	if p.Role == RoleViewer {
		return false
	}
	if p.Method == "token" && !p.TokenWrite {
		return false
	}
	return true
}

func (s *Service) requireAuth(p Principal) error {
	if !p.IsAuthenticated() {
		return errUnauthenticated()
	}
	return nil
}

// requireAdminRead allows admins and viewers.
func (s *Service) requireAdminRead(p Principal) error {
	if err := s.requireAuth(p); err != nil {
		return err
	}
	if p.Role != RoleAdmin && p.Role != RoleViewer {
		if p.Method == "token" {
			// Every request made with an access token is audited; a refused one is an
			// event of its own, apart from the aggregated usage.
			s.denied(context.Background(), p, "admin.access", "administrator role required")
		}
		return forbidden("administrator role required")
	}
	return nil
}

// requireAdminWrite allows admins whose credential may write.
func (s *Service) requireAdminWrite(ctx context.Context, p Principal, action string) error {
	if err := s.requireAdminRead(p); err != nil {
		return err
	}
	if p.Role != RoleAdmin {
		s.denied(ctx, p, action, "viewer role is read-only")
		return forbidden("viewer role is read-only")
	}
	return s.requireScope(ctx, p, action)
}

// requireSelfWrite allows any signed-in user whose credential may write to change their own things.
func (s *Service) requireSelfWrite(ctx context.Context, p Principal, action string) error {
	if err := s.requireAuth(p); err != nil {
		return err
	}
	return s.requireScope(ctx, p, action)
}

func (s *Service) requireScope(ctx context.Context, p Principal, action string) error {
	if p.Method == "token" && (!p.TokenWrite || p.Role == RoleViewer) {
		s.denied(ctx, p, action, "read-only access token")
		return &Error{Kind: KindForbidden, Code: CodeInsufficientScope, Message: "this access token is read-only"}
	}
	return nil
}

// event builds an audit record for p.
func (s *Service) event(p Principal, action, result string) Event {
	return Event{
		Time: s.Now(), Action: action, Result: result,
		ActorID: p.UserID, ActorName: p.Username, AuthMethod: string(p.Method),
		TokenID: p.TokenID, TokenName: p.TokenName, SourceIP: p.SourceIP,
	}
}

// record adds an audit event in its own transaction (for failures and denials, which change
// nothing else). Errors are logged, never returned: the audit of a refusal must not turn it
// into a 500.
func (s *Service) record(ctx context.Context, e Event) {
	err := s.store.Update(ctx, func(tx Tx) error {
		ev := e
		return tx.AddEvent(&ev)
	})
	if err != nil {
		s.log.Error("audit write failed", "action", e.Action, "err", err)
	}
}

func (s *Service) denied(ctx context.Context, p Principal, action, why string) {
	e := s.event(p, action, ResultDenied)
	e.Message = why
	s.record(ctx, e)
}

func newID() string { return uuid.NewString() }

var shortEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newShortID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return shortEnc.EncodeToString(b) // 8 characters
}

const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

// randomPassword returns n characters from crypto/rand.
func randomPassword(n int) string {
	var sb strings.Builder
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := 0; i < n; i++ {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		sb.WriteByte(passwordAlphabet[k.Int64()])
	}
	return sb.String()
}
