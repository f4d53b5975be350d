package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// VNCPort is the port the browser desktop (noVNC/KasmVNC and its websocket) listens on inside
// a managed container, on the container's own loopback.
const VNCPort = 6901

// VNCTicketTTL is how long a VNC ticket lives. Doors renew a ticket that is past half its life
// on each use; it never outlives the credential it was issued for.
const VNCTicketTTL = time.Hour

const vncAudience = "cloud-cli-proxy-vnc"

// VNCDoor is the route family a VNC request came through.
type VNCDoor string

// VNC doors.
const (
	// VNCAdmin is /v1/admin/hosts/:id/vnc: administrators, any host.
	VNCAdmin VNCDoor = "admin"
	// VNCUser is /v1/user/hosts/:id/vnc: the host's owner.
	VNCUser VNCDoor = "user"
)

// VNCTarget is where a door connects for a host's browser desktop: Addr inside the network
// namespace of process Pid (the container's init).
type VNCTarget struct {
	HostID string
	UserID string // the host's owner
	Pid    int
	Addr   string // e.g. 127.0.0.1:6901
}

// VNCTicket is a short-lived credential for one host's browser desktop through one door.
// Browsers cannot put an Authorization header on a WebSocket, so a door hands it out as a
// cookie scoped to that host's VNC path after the caller authenticated once.
type VNCTicket struct {
	Value     string
	ExpiresAt time.Time
}

type vncClaims struct {
	Host    string `json:"host"`
	Door    string `json:"door"`
	Version int64  `json:"ver"`
	// Method and Cred name the credential the ticket was issued for (jwt + its jti, token +
	// its id); it is checked again on every use, so logging out or revoking kills the ticket.
	Method  AuthMethod `json:"m"`
	Cred    string     `json:"cred"`
	CredExp int64      `json:"cexp,omitempty"` // unix seconds; 0 = the credential never expires
	jwt.RegisteredClaims
}

// vncKey is the ticket signing key: derived from the JWT secret, so a ticket is never a valid
// API bearer and an API JWT is never a valid ticket (the audiences differ too).
func (s *Service) vncKey() []byte {
	m := hmac.New(sha256.New, s.cfg.JWTSecret)
	m.Write([]byte("cloud-cli-proxy vnc ticket v1"))
	return m.Sum(nil)
}

// vncAuthorize decides whether p may use hostID's browser desktop through door. A desktop
// gives keyboard and mouse control of the workspace, so it is a write: the admin door needs
// an administrator whose credential may write (viewers are read-only), the user door the
// host's owner with a credential that may write. Another user's host is not found.
func (s *Service) vncAuthorize(ctx context.Context, p Principal, hostID string, door VNCDoor) (Host, error) {
	const action = "host.vnc"
	switch door {
	case VNCAdmin:
		if err := s.requireAdminRead(p); err != nil {
			return Host{}, err
		}
		if p.Role != RoleAdmin {
			s.denied(ctx, p, action, "viewer role is read-only: the browser desktop gives keyboard and mouse control")
			return Host{}, forbidden("viewer role is read-only: the browser desktop gives keyboard and mouse control")
		}
		if err := s.requireScope(ctx, p, action); err != nil {
			return Host{}, err
		}
	case VNCUser:
		if err := s.requireSelfWrite(ctx, p, action); err != nil {
			return Host{}, err
		}
	default:
		return Host{}, fmt.Errorf("app: unknown VNC door %q", door)
	}
	var h Host
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		h, err = tx.GetHost(hostID)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return Host{}, notFound("host")
		}
		return Host{}, err
	}
	if door == VNCUser && h.UserID != p.UserID {
		return Host{}, notFound("host")
	}
	return h, nil
}

// VNCTarget authorizes p to use the browser desktop of hostID through door and tells the
// door where to connect. A host that is not running is a conflict (host_not_running).
// connect marks the start of a desktop session (the WebSocket), which is audited as
// host.vnc; the page's static files are not.
func (s *Service) VNCTarget(ctx context.Context, p Principal, hostID string, door VNCDoor, connect bool) (VNCTarget, error) {
	h, err := s.vncAuthorize(ctx, p, hostID, door)
	if err != nil {
		return VNCTarget{}, err
	}
	notRunning := func(status HostState) error {
		msg := fmt.Sprintf("the host is %s, not running: start it, then open the desktop again", status)
		if h.DesiredState == HostDeleted {
			msg = "the host is being deleted"
		}
		return &Error{Kind: KindConflict, Code: CodeHostNotRunning, Message: msg}
	}
	if h.Status != HostRunning || h.DesiredState == HostDeleted {
		return VNCTarget{}, notRunning(h.Status)
	}
	rh, err := s.runtime.Inspect(ctx, h.ID)
	if err != nil {
		return VNCTarget{}, err
	}
	if rh.State != StateRunning || rh.Pid <= 0 {
		return VNCTarget{}, notRunning(HostState(rh.State))
	}
	if connect {
		e := s.event(p, "host.vnc", ResultSuccess)
		e.TargetType, e.TargetID, e.HostID, e.UserID = "host", h.ID, h.ID, h.UserID
		e.Message = "browser desktop via the " + string(door) + " door"
		s.record(ctx, e)
	}
	return VNCTarget{HostID: h.ID, UserID: h.UserID, Pid: rh.Pid,
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(VNCPort))}, nil
}

// VNCSocketKey is the capability a desktop's websocket must carry besides the ticket cookie.
// Every desktop is served on the server's own origin, so a page one container serves can
// open a websocket to another host's desktop, and the browser attaches that host's ticket
// cookie. The key is only ever put in the address of the page that the ?token= open
// redirects to; a page elsewhere on the origin cannot compute it (it is a MAC under the
// server's ticket key) nor read the HttpOnly cookie it goes with. It is bound to the user,
// the host, the door and the credential behind the ticket, so it stays valid while the
// ticket is renewed.
func (s *Service) VNCSocketKey(p Principal, hostID string, door VNCDoor) string {
	cred := p.JTI
	if p.Method == "token" {
		cred = p.TokenID
	}
	m := hmac.New(sha256.New, s.vncKey())
	fmt.Fprintf(m, "socket\x00%s\x00%s\x00%s\x00%s\x00%s", p.UserID, hostID, door, p.Method, cred)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// CheckVNCSocketKey refuses a desktop websocket carried by a ticket whose key is not
// VNCSocketKey(p, hostID, door).
func (s *Service) CheckVNCSocketKey(p Principal, hostID string, door VNCDoor, key string) error {
	want := s.VNCSocketKey(p, hostID, door)
	if subtle.ConstantTimeCompare([]byte(key), []byte(want)) != 1 {
		return &Error{Kind: KindForbidden, Code: CodeVNCSocketKey,
			Message: "this desktop connection lacks its key: open the desktop again with ?token=<your token>"}
	}
	return nil
}

// VNCTicketDue reports whether a ticket expiring at exp is due for renewal: past half its
// life (VNCTicketTTL), a door issues a fresh one with the request it carried.
func (s *Service) VNCTicketDue(exp time.Time) bool {
	return exp.Sub(s.Now()) < VNCTicketTTL/2
}

// IssueVNCTicket issues a ticket for p's use of hostID's desktop through door (after the same
// authorization as VNCTarget). It expires after VNCTicketTTL, or with p's credential if that
// comes first.
func (s *Service) IssueVNCTicket(ctx context.Context, p Principal, hostID string, door VNCDoor) (VNCTicket, error) {
	h, err := s.vncAuthorize(ctx, p, hostID, door)
	if err != nil {
		return VNCTicket{}, err
	}
	c := vncClaims{Host: h.ID, Door: string(door), Method: p.Method}
	now := s.Now()
	exp := now.Add(VNCTicketTTL)
	switch p.Method {
	case "jwt":
		if p.JTI == "" || p.JWTExpiry.IsZero() {
			return VNCTicket{}, errUnauthenticated()
		}
		c.Cred, c.CredExp = p.JTI, p.JWTExpiry.Unix()
	case "token":
		if p.TokenID == "" {
			return VNCTicket{}, errUnauthenticated()
		}
		c.Cred = p.TokenID
		if at := s.tokenExpiryOf(p.TokenID); at != nil {
			c.CredExp = at.Unix()
		}
	default:
		// Tickets carry API credentials only (a JWT or an access token).
		return VNCTicket{}, errUnauthenticated()
	}
	if c.CredExp != 0 {
		if ce := time.Unix(c.CredExp, 0).UTC(); ce.Before(exp) {
			exp = ce
		}
	}
	var u User
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		u, err = tx.GetUser(p.UserID)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return VNCTicket{}, errUnauthenticated()
		}
		return VNCTicket{}, err
	}
	c.Version = u.Version
	c.RegisteredClaims = jwt.RegisteredClaims{
		Issuer: s.cfg.JWTIssuer, Subject: u.ID, Audience: jwt.ClaimStrings{vncAudience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp), ID: newID(),
	}
	v, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.vncKey())
	if err != nil {
		return VNCTicket{}, err
	}
	return VNCTicket{Value: v, ExpiresAt: exp}, nil
}

// AuthenticateVNCTicket turns a ticket into the Principal it was issued for, checking that it
// was issued for hostID and door, and that the account and the credential behind it are
// still good (not disabled, password unchanged, not logged out, token not revoked). It also
// returns the ticket's expiry, so the door can renew it. Every failure is the generic
// unauthenticated error.
func (s *Service) AuthenticateVNCTicket(ctx context.Context, ip, value, hostID string, door VNCDoor) (Principal, time.Time, error) {
	var c vncClaims
	_, err := jwt.ParseWithClaims(value, &c, func(*jwt.Token) (any, error) { return s.vncKey(), nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(s.cfg.JWTIssuer), jwt.WithAudience(vncAudience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.Now), jwt.WithLeeway(5*time.Second))
	if err != nil || c.Subject == "" || c.Cred == "" || c.Host != hostID || c.Door != string(door) {
		return Principal{}, time.Time{}, errUnauthenticated()
	}
	now := s.Now()
	if c.CredExp != 0 && !now.Before(time.Unix(c.CredExp, 0)) {
		return Principal{}, time.Time{}, errUnauthenticated()
	}
	var u User
	var tok AccessToken
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		if u, err = tx.GetUser(c.Subject); err != nil {
			return err
		}
		switch c.Method {
		case "jwt":
			revoked, err := tx.IsJWTRevoked(c.Cred)
			if err != nil {
				return err
			}
			if revoked {
				return errUnauthenticated()
			}
		case "token":
			if tok, err = tx.GetToken(c.Cred); err != nil {
				return err
			}
		default:
			return errUnauthenticated()
		}
		return nil
	})
	if err != nil {
		if isNotFound(err) || AsError(err).Kind == KindUnauthenticated {
			return Principal{}, time.Time{}, errUnauthenticated()
		}
		return Principal{}, time.Time{}, err
	}
	if u.Version != c.Version || !s.userMayLogin(u) {
		return Principal{}, time.Time{}, errUnauthenticated()
	}
	p := Principal{UserID: u.ID, Username: u.Username, Role: u.Role, Method: c.Method, SourceIP: ip}
	switch c.Method {
	case "jwt":
		p.JTI, p.JWTExpiry = c.Cred, time.Unix(c.CredExp, 0).UTC()
	case "token":
		if tok.UserID != u.ID || !tok.Active || (tok.ExpiresAt != nil && !now.Before(*tok.ExpiresAt)) {
			return Principal{}, time.Time{}, errUnauthenticated()
		}
		p.TokenID, p.TokenName, p.TokenWrite = tok.ID, tok.Name, tok.Write && u.Role != RoleViewer
		if tok.ExpiresAt != nil {
			p.TokenExpiresAt = *tok.ExpiresAt
		}
	}
	return p, c.ExpiresAt.Time, nil
}

// DialWorkspace dials addr inside the network namespace of process pid (a VNCTarget's), so
// a door reaches a workspace's own loopback through the engine room.
func (s *Service) DialWorkspace(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	return s.runtime.DialNetns(ctx, pid, network, addr)
}
