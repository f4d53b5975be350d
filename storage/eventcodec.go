package storage

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// decodeEvent decodes an event record. Records are written by json.Marshal, so they are
// compact objects of plain string fields; decodeEventFast reads those several times faster
// than encoding/json (decoding is most of the cost of an event query). Anything it does not
// recognise exactly (escapes, unknown keys, non-string values) goes to encoding/json.
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
		val, n, ok := plainString(d, n+1)
		if !ok {
			return false
		}
		switch string(key) {
		case "id":
			e.ID = string(val)
		case "time":
			t, err := time.Parse(time.RFC3339Nano, string(val))
			if err != nil {
				return false
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
		default:
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
