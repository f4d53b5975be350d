package storage

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	events := []app.Event{
		{},
		{ID: "00", Time: at(1), Action: "a"},
		{ID: "x", Time: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC), Action: "host.create", Result: app.ResultSuccess,
			ActorID: "u1", ActorName: "alice", AuthMethod: "jwt", TokenID: "t", TokenName: "ci", SourceIP: "2001:db8::1",
			TargetType: "host", TargetID: "h1", UserID: "u1", HostID: "h1", Message: "plain message"},
		{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, ist), Message: "zoned"},
		{Time: at(2), Message: `quote " backslash \ newline` + "\n tab\t"},
		{Time: at(3), Message: "<html> & ünïcödé 日本 \u2028 emoji 🎉"},
		{Time: at(4), ActorName: "bad utf8 \xff\xfe"},
		{ID: "u", Time: at(5), Action: app.ActionTokenUse, TokenID: "t", Count: 1},
		{ID: "v", Time: at(6), Action: app.ActionTokenUse, Count: 987654321, Message: "last request: GET /v1/tokens"},
		{Time: at(7), Count: 1234567890},
		{ID: "r", Time: at(8), Action: "user.create", RequestID: "4f1c2a9e-req"},
	}
	for _, want := range events {
		raw, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var ref app.Event
		if err := json.Unmarshal(raw, &ref); err != nil {
			t.Fatal(err)
		}
		got := app.Event{ID: "garbage", HostID: "garbage"}
		if err := decodeEvent(raw, &got); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if !reflect.DeepEqual(got, ref) {
			t.Errorf("%s:\n got  %#v\n want %#v", raw, got, ref)
		}
	}
	// The request id is read by the fast path, not handed over to encoding/json.
	if raw, _ := json.Marshal(app.Event{ID: "r", Time: at(8), RequestID: "abc"}); !decodeEventFast(raw, new(app.Event)) {
		t.Errorf("fast decoder does not read request_id: %s", raw)
	}
	// Inputs the fast path must hand over (or reject) rather than misread.
	for _, raw := range []string{
		`{"message":null,"type":"a"}`,
		`{"Type":"a"}`,
		`{"type":"a","extra":1}`,
		`{ "type" : "a" }`,
		`{"type":"a",}`,
		`{"type":"a"}x`,
		`{"time":"yesterday"}`,
		`{"type":"a"`,
		`{"count":007}`,
		`{"count":-1}`,
		`{"count":1.5}`,
		`{"count":1e3}`,
		`{"count":"3"}`,
		`{"count":}`,
		`{"count":99999999999999999999}`,
		`{"count":12,"count":3}`,
		`[]`,
		``,
	} {
		var ref app.Event
		refErr := json.Unmarshal([]byte(raw), &ref)
		var got app.Event
		err := decodeEvent([]byte(raw), &got)
		if (err == nil) != (refErr == nil) || err == nil && !reflect.DeepEqual(got, ref) {
			t.Errorf("%q: got %#v, %v; want %#v, %v", raw, got, err, ref, refErr)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(`{"id":"a","time":"2025-01-01T00:00:00Z","type":"x","message":"hi"}`)
	f.Add(`{"message":"a\"b"}`)
	f.Add(`{"type":"token.use","count":12}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var ref app.Event
		refErr := json.Unmarshal([]byte(raw), &ref)
		var got app.Event
		err := decodeEvent([]byte(raw), &got)
		if refErr == nil && (err != nil || !reflect.DeepEqual(got, ref)) {
			t.Fatalf("%q: got %#v, %v; want %#v", raw, got, err, ref)
		}
	})
}
