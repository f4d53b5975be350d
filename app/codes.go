package app

import "net/http"

// ErrorCode is the stable code of an error: the "code" of the REST API's error body, the code
// of a failed task, and the code behind an SSH door's refusal. Clients may rely on it. Every
// fixed code is one of the constants below, each listed by ErrorCodes (and so in the README's
// error table); the one dynamic family is invalid_<field> (InvalidFieldCode).
type ErrorCode string

func (c ErrorCode) String() string { return string(c) }

// InvalidFieldCode is the code of a refused input field: invalid_<field>, with the dots and
// brackets of a nested field name turned to underscores ("input" when field is empty). A
// body field answers 422, a query parameter 400.
func InvalidFieldCode(field string) ErrorCode {
	return ErrorCode("invalid_" + fieldCode(field))
}

// Error codes, one constant each; ErrorCodes describes them all.
const (
	// Generic answers.

	// CodeNotFound: the resource does not exist, or the caller may not see it (404).
	CodeNotFound ErrorCode = "not_found"
	// CodeForbidden: the caller's role may not do this (403).
	CodeForbidden ErrorCode = "forbidden"
	// CodeInsufficientScope: the access token's scope or lifetime does not allow this (403).
	CodeInsufficientScope ErrorCode = "insufficient_scope"
	// CodeUnauthenticated: missing, invalid or expired credentials (401).
	CodeUnauthenticated ErrorCode = "unauthenticated"
	// CodeInternal: an unexpected failure; details are only in the server's log (500).
	CodeInternal ErrorCode = "internal"

	// Request bodies and routes (the REST door).

	// CodeRouteNotFound: no route has this path (404).
	CodeRouteNotFound ErrorCode = "route_not_found"
	// CodeMethodNotAllowed: the path exists but not with this method (405).
	CodeMethodNotAllowed ErrorCode = "method_not_allowed"
	// CodeRateLimited: the client IP's request budget is spent (429, Retry-After).
	CodeRateLimited ErrorCode = "rate_limited"
	// CodeMalformedJSON: the request body is not one valid JSON object (400).
	CodeMalformedJSON ErrorCode = "malformed_json"
	// CodeWrongType: a body field has a value of the wrong type or form (400).
	CodeWrongType ErrorCode = "wrong_type"
	// CodeUnknownField: the request body has a field the route does not take (400).
	CodeUnknownField ErrorCode = "unknown_field"
	// CodeEmptyBody: the route needs a JSON body and got none (400).
	CodeEmptyBody ErrorCode = "empty_body"
	// CodeBodyTooLarge: the request body exceeds 1 MiB (413).
	CodeBodyTooLarge ErrorCode = "body_too_large"
	// CodeInvalidFormat: the format parameter of a bootstrap script is not json or shell (400).
	CodeInvalidFormat ErrorCode = "invalid_format"
	// CodeInvalidLimit refuses a listing's limit outside its range (400).
	CodeInvalidLimit ErrorCode = "invalid_limit"
	// CodeInvalidCursor: an events cursor that was not handed out by the server (400).
	CodeInvalidCursor ErrorCode = "invalid_cursor"
	// CodeInvalidKeepHome: the keep_home parameter is not true or false (400).
	CodeInvalidKeepHome ErrorCode = "invalid_keep_home"
	// CodeInvalidID: a record id is missing (422).
	CodeInvalidID ErrorCode = "invalid_id"

	// Accounts, logins and tokens.

	// CodeLastAdmin refuses a change that would leave no active administrator: disabling,
	// demoting, expiring or deleting the last one (409).
	CodeLastAdmin ErrorCode = "last_admin"
	// CodeSelfLockout: an administrator may not disable or demote their own account (409).
	CodeSelfLockout ErrorCode = "self_lockout"
	// CodeSelfDelete: an administrator may not delete their own account (409).
	CodeSelfDelete ErrorCode = "self_delete"
	// CodeDuplicateUsername: the username is taken (409).
	CodeDuplicateUsername ErrorCode = "duplicate_username"
	// CodeDuplicateKey: the SSH key is already registered for the user (409).
	CodeDuplicateKey ErrorCode = "duplicate_key"
	// CodeDuplicateShortID: a host's short id is already in use (409).
	CodeDuplicateShortID ErrorCode = "duplicate_short_id"
	// CodeDuplicateTokenName: the user already has an access token of this name (409).
	CodeDuplicateTokenName ErrorCode = "duplicate_token_name"
	// CodeDuplicateTokenHash: a generated token collides with a stored one (409).
	CodeDuplicateTokenHash ErrorCode = "duplicate_token_hash"
	// CodeTooManyAttempts: logins or handoff redemptions are throttled after failures (429).
	CodeTooManyAttempts ErrorCode = "too_many_attempts"
	// CodeNotASession: logout and refresh take a login session, not an access token (400).
	CodeNotASession ErrorCode = "not_a_session"
	// CodeTokenValueUnavailable: token values are shown once and only their hash is kept (410).
	CodeTokenValueUnavailable ErrorCode = "token_value_unavailable"

	// Hosts and tasks.

	// CodeHostBusy: the host has a task in progress (409).
	CodeHostBusy ErrorCode = "host_busy"
	// CodeHostChanged: the host changed while the reconciler planned a task for it (409).
	CodeHostChanged ErrorCode = "host_changed"
	// CodeHostDeleting: the user's host is being deleted (SSH).
	CodeHostDeleting ErrorCode = "host_deleting"
	// CodeHostNotRunning: the host's container is not running (409; 503 on the SSH gateway).
	CodeHostNotRunning ErrorCode = "host_not_running"
	// CodeHostNotReady: the user's host did not become ready for a session (SSH).
	CodeHostNotReady ErrorCode = "host_not_ready"
	// CodeNoHost: the user has no host yet (SSH).
	CodeNoHost ErrorCode = "no_host"
	// CodeTaskNotFinished: a handoff is asked for before its task succeeded (409).
	CodeTaskNotFinished ErrorCode = "task_not_finished"
	// CodeInterrupted: the server stopped while the task was running (task error).
	CodeInterrupted ErrorCode = "interrupted"
	// CodeBackupUnsupported: this store cannot be backed up (503).
	CodeBackupUnsupported ErrorCode = "backup_unsupported"

	// The container engine (app.RuntimeError codes; also task errors).

	// CodeRuntimeUnavailable: the container engine is unreachable or not configured (503).
	CodeRuntimeUnavailable ErrorCode = "runtime_unavailable"
	// CodeImageMissing: the managed image is not on the engine (500, task error).
	CodeImageMissing ErrorCode = "image_missing"
	// CodeImagePullFailed: pulling the managed image failed; the message is the registry's (500, task error).
	CodeImagePullFailed ErrorCode = "image_pull_failed"
	// CodeOutOfMemory: the container was killed for exceeding its memory limit (500, task error).
	CodeOutOfMemory ErrorCode = "out_of_memory"
	// CodeRuntimeError: any other container engine failure (500, task error).
	CodeRuntimeError ErrorCode = "runtime_error"
	// CodeContainerMissing: the host has no container (500, task error).
	CodeContainerMissing ErrorCode = "container_missing"
	// CodeContainerNotRunning: the host's container exists but is not running (500, task error).
	CodeContainerNotRunning ErrorCode = "container_not_running"

	// Egress IPs, bindings and tunnels.

	// CodeEgressIPBound: the egress IP is still bound to hosts (409).
	CodeEgressIPBound ErrorCode = "egress_ip_bound"
	// CodeHostAlreadyBound: the host is already bound to an egress IP (409).
	CodeHostAlreadyBound ErrorCode = "host_already_bound"
	// CodeHostRunningOnNetwork: a running host on the unbound network must be stopped to bind (409).
	CodeHostRunningOnNetwork ErrorCode = "host_running_on_network"
	// CodeEgressAttachFailed: the host's egress tunnel could not be attached (503, task error).
	CodeEgressAttachFailed ErrorCode = "egress_attach_failed"
	// CodeEgressCheckError: a host's egress could not be checked (503, task error).
	CodeEgressCheckError ErrorCode = "egress_check_error"
	// CodeEgressCheckFailed: a host's egress check failed (503, task error).
	CodeEgressCheckFailed ErrorCode = "egress_check_failed"
	// CodeTunnelUnavailable: this server was built without egress tunnels (503).
	CodeTunnelUnavailable ErrorCode = "tunnel_unavailable"
	// CodeTunnelCheckUnconfigured: no egress check service is configured (503).
	CodeTunnelCheckUnconfigured ErrorCode = "tunnel_check_unconfigured"
	// CodeTunnelTypeUnsupported: the egress IP's tunnel type cannot be run here (503).
	CodeTunnelTypeUnsupported ErrorCode = "tunnel_type_unsupported"

	// The browser desktop.

	// CodeVNCSocketKey: a desktop websocket without the key of its ticket (403).
	CodeVNCSocketKey ErrorCode = "vnc_socket_key"
	// CodeServiceWorker: service workers cannot be installed through the desktop (403).
	CodeServiceWorker ErrorCode = "service_worker"
	// CodeCrossOrigin: the desktop's cookie was sent from another origin (403).
	CodeCrossOrigin ErrorCode = "cross_origin"
	// CodeVNCUnavailable: the desktop proxy cannot enter containers on this server (503).
	CodeVNCUnavailable ErrorCode = "vnc_unavailable"
	// CodeVNCUnreachable: the host's desktop did not answer (502).
	CodeVNCUnreachable ErrorCode = "vnc_unreachable"

	// The SSH doors (SSH messages, no HTTP status).

	// CodeAccessDenied: the SSH gateway refuses the login or the host.
	CodeAccessDenied ErrorCode = "access_denied"
	// CodeSessionEnded: the user's access ended while the session was open.
	CodeSessionEnded ErrorCode = "session_ended"
	// CodeTooManySessions is the error code of a session refused by SSH_MAX_SESSIONS_PER_USER.
	CodeTooManySessions ErrorCode = "too_many_sessions"
	// CodeUnsupportedSubsystem: an SSH subsystem other than sftp.
	CodeUnsupportedSubsystem ErrorCode = "unsupported_subsystem"
	// CodeForwardRefused: a port forward to a non-loopback address, or refused in the container.
	CodeForwardRefused ErrorCode = "forward_refused"
	// CodeForwardUnavailable: port forwarding is not available on this server.
	CodeForwardUnavailable ErrorCode = "forward_unavailable"
	// CodeAttachFailed: a session could not be attached to the user's container.
	CodeAttachFailed ErrorCode = "attach_failed"
	// CodeShellFailed: the SSH gateway could not run the session in the container.
	CodeShellFailed ErrorCode = "shell_failed"
)

// invalidFieldFamily names the dynamic invalid_<field> codes in ErrorCodes.
const invalidFieldFamily ErrorCode = "invalid_<field>"

// ErrorCodeInfo describes one error code.
type ErrorCodeInfo struct {
	Code ErrorCode
	// Kind is the kind the code is built with (the REST door's status follows from it).
	Kind Kind
	// Status is the HTTP status the REST API answers with; 0 when the code is no REST
	// answer (the SSH doors, a task's error).
	Status int
	// Meaning is one line for clients.
	Meaning string
}

// ErrorCodes lists every error code (and the invalid_<field> family) in the README's order.
func ErrorCodes() []ErrorCodeInfo {
	return []ErrorCodeInfo{
		{CodeNotFound, KindNotFound, http.StatusNotFound, "The resource does not exist, or the caller may not see it (another user's host is 404 too)."},
		{CodeForbidden, KindForbidden, http.StatusForbidden, "The caller's role may not do this (a viewer's mutation)."},
		{CodeInsufficientScope, KindForbidden, http.StatusForbidden, "The access token is read-only, or would create a token outliving itself (`WWW-Authenticate: Bearer error=\"insufficient_scope\"`)."},
		{CodeUnauthenticated, KindUnauthenticated, http.StatusUnauthorized, "Missing, invalid or expired credentials; every failure gets the same message."},
		{CodeInternal, KindInternal, http.StatusInternalServerError, "An unexpected failure; the details are only in the server's log."},
		{invalidFieldFamily, KindInvalid, http.StatusUnprocessableEntity, "A refused input value, naming it in `field` (e.g. `invalid_username`); 400 for a query parameter."},
		{CodeRouteNotFound, KindNotFound, http.StatusNotFound, "No route has this path."},
		{CodeMethodNotAllowed, KindBadRequest, http.StatusMethodNotAllowed, "The path exists, but not with this method."},
		{CodeRateLimited, KindRateLimited, http.StatusTooManyRequests, "The client IP's request budget is spent (`Retry-After`)."},
		{CodeMalformedJSON, KindBadRequest, http.StatusBadRequest, "The request body is not one valid JSON object."},
		{CodeWrongType, KindBadRequest, http.StatusBadRequest, "A body field has a value of the wrong type or form (naming it in `field`)."},
		{CodeUnknownField, KindBadRequest, http.StatusBadRequest, "The body has a field the route does not take (naming it in `field`)."},
		{CodeEmptyBody, KindBadRequest, http.StatusBadRequest, "The route needs a JSON body and got none."},
		{CodeBodyTooLarge, KindTooLarge, http.StatusRequestEntityTooLarge, "The request body exceeds 1 MiB."},
		{CodeInvalidFormat, KindBadRequest, http.StatusBadRequest, "A bootstrap script's `format` is not `json` or `shell`."},
		{CodeInvalidLimit, KindBadRequest, http.StatusBadRequest, "A listing's `limit` is outside its range."},
		{CodeInvalidCursor, KindBadRequest, http.StatusBadRequest, "An events `cursor` the server did not hand out."},
		{CodeInvalidKeepHome, KindBadRequest, http.StatusBadRequest, "`keep_home` is not `true` or `false`."},
		{CodeInvalidID, KindInvalid, http.StatusUnprocessableEntity, "A record id is missing."},
		{CodeLastAdmin, KindConflict, http.StatusConflict, "The change would leave no active administrator (disable, demote, expiry, delete)."},
		{CodeSelfLockout, KindConflict, http.StatusConflict, "You cannot disable or demote your own account."},
		{CodeSelfDelete, KindConflict, http.StatusConflict, "You cannot delete your own account."},
		{CodeDuplicateUsername, KindConflict, http.StatusConflict, "The username is taken."},
		{CodeDuplicateKey, KindConflict, http.StatusConflict, "The SSH key is already registered for the user."},
		{CodeDuplicateShortID, KindConflict, http.StatusConflict, "A host's short id is already in use."},
		{CodeDuplicateTokenName, KindConflict, http.StatusConflict, "The user already has an access token of this name."},
		{CodeDuplicateTokenHash, KindConflict, http.StatusConflict, "A generated token collided with a stored one; try again."},
		{CodeTooManyAttempts, KindRateLimited, http.StatusTooManyRequests, "Logins (per IP and username) or handoff redemptions are throttled after failures (`Retry-After`)."},
		{CodeNotASession, KindBadRequest, http.StatusBadRequest, "Logout and refresh take a login session, not an access token."},
		{CodeTokenValueUnavailable, KindGone, http.StatusGone, "Token values are shown once and stored only as a hash; regenerate the token."},
		{CodeHostBusy, KindConflict, http.StatusConflict, "The host has a task in progress (named in the message)."},
		{CodeHostChanged, KindConflict, http.StatusConflict, "The host changed while the reconciler planned a task for it."},
		{CodeHostDeleting, KindConflict, 0, "SSH: the user's host is being deleted."},
		{CodeHostNotRunning, KindConflict, http.StatusConflict, "The host's container is not running (the SSH gateway says so too)."},
		{CodeHostNotReady, KindUnavailable, 0, "SSH: the user's host did not become ready for the session."},
		{CodeNoHost, KindNotFound, 0, "SSH: the user has no host yet."},
		{CodeTaskNotFinished, KindConflict, http.StatusConflict, "A handoff is asked for before its task succeeded."},
		{CodeInterrupted, KindInternal, 0, "Task error: the server stopped while the task was running."},
		{CodeBackupUnsupported, KindUnavailable, http.StatusServiceUnavailable, "This store cannot be backed up."},
		{CodeRuntimeUnavailable, KindUnavailable, http.StatusServiceUnavailable, "The container engine is unreachable or not configured (also a task error)."},
		{CodeImageMissing, KindInternal, http.StatusInternalServerError, "The managed image is not on the container engine (also a task error)."},
		{CodeImagePullFailed, KindInternal, http.StatusInternalServerError, "Pulling the managed image (IMAGE_PULL_POLICY) failed; the message is the registry's (a task error)."},
		{CodeOutOfMemory, KindInternal, http.StatusInternalServerError, "The container was killed for exceeding its memory limit (also a task error)."},
		{CodeRuntimeError, KindInternal, http.StatusInternalServerError, "Any other container engine failure (also a task error)."},
		{CodeContainerMissing, KindInternal, http.StatusInternalServerError, "The host has no container (also a task error)."},
		{CodeContainerNotRunning, KindInternal, http.StatusInternalServerError, "The host's container exists but is not running (also a task error)."},
		{CodeEgressIPBound, KindConflict, http.StatusConflict, "The egress IP is still bound to hosts; unbind them first."},
		{CodeHostAlreadyBound, KindConflict, http.StatusConflict, "The host is already bound to an egress IP."},
		{CodeHostRunningOnNetwork, KindConflict, http.StatusConflict, "The host runs on the unbound network: stop it, bind it, then start it."},
		{CodeEgressAttachFailed, KindUnavailable, http.StatusServiceUnavailable, "The host's egress tunnel could not be attached (also a task error)."},
		{CodeEgressCheckError, KindUnavailable, http.StatusServiceUnavailable, "The host's egress could not be checked (also a task error)."},
		{CodeEgressCheckFailed, KindUnavailable, http.StatusServiceUnavailable, "The host's egress check failed (also a task error)."},
		{CodeTunnelUnavailable, KindUnavailable, http.StatusServiceUnavailable, "This server was built without egress tunnels."},
		{CodeTunnelCheckUnconfigured, KindUnavailable, http.StatusServiceUnavailable, "No egress check service is configured (`EGRESS_CHECK_SERVER_URL`)."},
		{CodeTunnelTypeUnsupported, KindUnavailable, http.StatusServiceUnavailable, "The egress IP's tunnel type cannot be run on this server."},
		{CodeVNCSocketKey, KindForbidden, http.StatusForbidden, "A desktop websocket without its ticket's key; open the desktop again."},
		{CodeServiceWorker, KindForbidden, http.StatusForbidden, "Service workers cannot be installed through the browser desktop."},
		{CodeCrossOrigin, KindForbidden, http.StatusForbidden, "The browser desktop cannot be used from another origin."},
		{CodeVNCUnavailable, KindUnavailable, http.StatusServiceUnavailable, "The desktop proxy cannot reach containers on this server."},
		{CodeVNCUnreachable, KindUnavailable, http.StatusBadGateway, "The host's desktop did not answer; it may still be starting."},
		{CodeAccessDenied, KindUnauthenticated, 0, "SSH gateway: the login or the host is refused."},
		{CodeSessionEnded, KindUnauthenticated, 0, "SSH: the user's access ended while the session was open."},
		{CodeTooManySessions, KindRateLimited, 0, "SSH: the session would exceed `SSH_MAX_SESSIONS_PER_USER`."},
		{CodeUnsupportedSubsystem, KindInvalid, 0, "SSH gateway: a subsystem other than sftp."},
		{CodeForwardRefused, KindForbidden, 0, "SSH gateway: a port forward to a non-loopback address, or refused in the container."},
		{CodeForwardUnavailable, KindUnavailable, 0, "SSH gateway: port forwarding is not available on this server."},
		{CodeAttachFailed, KindUnavailable, 0, "SSH: the session could not be attached to the user's container."},
		{CodeShellFailed, KindUnavailable, 0, "SSH gateway: the session could not be run in the container."},
	}
}
