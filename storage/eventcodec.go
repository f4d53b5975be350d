package storage

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// decodeEvent decodes an event record. Records are written by json.Marshal, so they are
// compact objects of plain string fields (and a small count); decodeEventFast reads those
// several times faster than encoding/json (decoding is most of the cost of an event query).
// Anything it does not recognise exactly (escapes, unknown keys, other values) goes to
// encoding/json.
func decodeEvent(data []byte, e *app.Event) error {
	if decodeEventFast(data, e) {
		return nil
	}
	*e = app.Event{}
	return json.Unmarshal(data, e)
}

func decodeEventFast(d []byte, e *app.Event) bool {
	*e = app.Event{}
	if len(d) < 2 || d[0] != '{' {
		return false
	}
	i := 1
	if d[i] == '}' {
		return len(d) == 2
	}
	for {
		key, n, ok := plainString(d, i)
		if !ok || n >= len(d) || d[n] != ':' {
			return false
		}
		if string(key) == "count" {
			if e.Count, n, ok = plainCount(d, n+1); !ok {
				return false
			}
		} else if n, ok = eventField(e, key, d, n+1); !ok {
			return false
		}
		if n >= len(d) {
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

// eventField reads the string value at d[i] into the field key names; it returns the index
// after the value.
func eventField(e *app.Event, key, d []byte, i int) (int, bool) {
	val, n, ok := plainString(d, i)
	if !ok {
		return 0, false
	}
	switch string(key) {
	case "id":
		e.ID = string(val)
	case "time":
		t, err := time.Parse(time.RFC3339Nano, string(val))
		if err != nil {
			return 0, false
		}
		e.Time = t
	case "type":
		e.Action = string(val)
	case "result":
		e.Result = string(val)
	case "actor_id":
		e.ActorID = string(val)
	case "actor_name":
		e.ActorName = string(val)
	case "auth_method":
		e.AuthMethod = string(val)
	case "token_id":
		e.TokenID = string(val)
	case "token_name":
		e.TokenName = string(val)
	case "source_ip":
		e.SourceIP = string(val)
	case "target_type":
		e.TargetType = string(val)
	case "target_id":
		e.TargetID = string(val)
	case "user_id":
		e.UserID = string(val)
	case "host_id":
		e.HostID = string(val)
	case "message":
		e.Message = string(val)
	case "request_id":
		e.RequestID = string(val)
	default:
		return 0, false
	}
	return n, true
}

// plainCount reads a small non-negative JSON integer at d[i] (an event's count): digits
// only, no leading zero. It returns the value and the index after it.
func plainCount(d []byte, i int) (int, int, bool) {
	j, v := i, 0
	for j < len(d) && d[j] >= '0' && d[j] <= '9' && j-i < 9 {
		v = v*10 + int(d[j]-'0')
		j++
	}
	if j == i || (d[i] == '0' && j-i > 1) || (j < len(d) && d[j] >= '0' && d[j] <= '9') {
		return 0, 0, false
	}
	return v, j, true
}

// plainString reads a JSON string at d[i] that needs no unescaping: no backslash, no control
// character, valid UTF-8. It returns its contents and the index after the closing quote.
func plainString(d []byte, i int) ([]byte, int, bool) {
	if i >= len(d) || d[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(d); j++ {
		switch c := d[j]; {
		case c == '"':
			s := d[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}
