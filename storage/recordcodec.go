package storage

import (
	"encoding/json"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// decodeRecord decodes a stored record. Access tokens and users are read on every
// authenticated request; like events (decodeEventFast) they go through a fast path for the
// compact objects json.Marshal writes, and anything it does not recognise exactly goes to
// encoding/json.
func decodeRecord[T any](raw []byte, v *T) error {
	switch p := any(v).(type) {
	case *app.AccessToken:
		if decodeTokenFast(raw, p) {
			return nil
		}
		*p = app.AccessToken{}
	case *app.User:
		if decodeUserFast(raw, p) {
			return nil
		}
		*p = app.User{}
	}
	return json.Unmarshal(raw, v)
}

// flatObject calls field for each member of a compact JSON object whose values are plain
// strings (see plainString; str is true and val is the contents) or bare literals (true,
// false, null, numbers; str is false and val is the literal as written). It returns false on
// anything else, or when field does. The values are substrings of one copy of d: decoding a
// record costs one string allocation, not one per field.
func flatObject(d []byte, field func(key []byte, val string, str bool) bool) bool {
	if len(d) < 2 || d[0] != '{' {
		return false
	}
	i := 1
	if d[i] == '}' {
		return len(d) == 2
	}
	all := string(d)
	for {
		key, n, ok := plainString(d, i)
		if !ok || n >= len(d) || d[n] != ':' {
			return false
		}
		n++
		var val string
		str := n < len(d) && d[n] == '"'
		if str {
			start := n + 1
			if _, n, ok = plainString(d, n); !ok {
				return false
			}
			val = all[start : n-1]
		} else {
			j := n
			for j < len(d) && d[j] != ',' && d[j] != '}' {
				j++
			}
			val, n = all[n:j], j
		}
		if !field(key, val, str) || n >= len(d) {
			return false
		}
		switch d[n] {
		case ',':
			i = n + 1
		case '}':
			return n+1 == len(d)
		default:
			return false
		}
	}
}

func fastBool(val string, str bool, dst *bool) bool {
	switch {
	case str:
		return false
	case val == "true":
		*dst = true
	case val == "false":
		*dst = false
	default:
		return false
	}
	return true
}

func fastTime(val string, str bool, dst *time.Time) bool {
	if !str {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, val)
	if err != nil {
		return false
	}
	*dst = t
	return true
}

// fastTimePtr reads a string time or null.
func fastTimePtr(val string, str bool, dst **time.Time) bool {
	if !str {
		if val != "null" {
			return false
		}
		*dst = nil
		return true
	}
	var t time.Time
	if !fastTime(val, str, &t) {
		return false
	}
	*dst = &t
	return true
}

// fastInt reads a JSON integer: an optional minus, then 0 or digits not starting with 0.
func fastInt(val string, str bool, dst *int64) bool {
	if str || len(val) == 0 || len(val) > 18 {
		return false
	}
	digits := val
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && len(digits) > 1 {
		return false
	}
	var n int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int64(c-'0')
	}
	if val[0] == '-' {
		n = -n
	}
	*dst = n
	return true
}

func decodeTokenFast(d []byte, t *app.AccessToken) bool {
	*t = app.AccessToken{}
	return flatObject(d, func(key []byte, val string, str bool) bool {
		switch string(key) {
		case "id":
			t.ID = val
		case "user_id":
			t.UserID = val
		case "name":
			t.Name = val
		case "hash":
			t.Hash = val
		case "hint":
			t.Hint = val
		case "last_used_ip":
			t.LastUsedIP = val
		case "write":
			return fastBool(val, str, &t.Write)
		case "active":
			return fastBool(val, str, &t.Active)
		case "expires_at":
			return fastTimePtr(val, str, &t.ExpiresAt)
		case "created_at":
			return fastTime(val, str, &t.CreatedAt)
		case "updated_at":
			return fastTime(val, str, &t.UpdatedAt)
		case "last_used_at":
			return fastTimePtr(val, str, &t.LastUsedAt)
		default:
			return false
		}
		return str
	})
}

func decodeUserFast(d []byte, u *app.User) bool {
	*u = app.User{}
	return flatObject(d, func(key []byte, val string, str bool) bool {
		switch string(key) {
		case "id":
			u.ID = val
		case "username":
			u.Username = val
		case "role":
			u.Role = app.Role(val)
		case "status":
			u.Status = app.UserStatus(val)
		case "password_hash":
			u.PasswordHash = val
		case "expires_at":
			return fastTimePtr(val, str, &u.ExpiresAt)
		case "created_at":
			return fastTime(val, str, &u.CreatedAt)
		case "updated_at":
			return fastTime(val, str, &u.UpdatedAt)
		case "version":
			return fastInt(val, str, &u.Version)
		default:
			return false
		}
		return str
	})
}
