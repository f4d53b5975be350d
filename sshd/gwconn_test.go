package sshd

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// recConn records the writes and deadlines that reach the connection.
type recConn struct {
	net.Conn
	mu        sync.Mutex
	writes    [][]byte
	deadlines []time.Time
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (r *recConn) Close() error { return nil }

func (r *recConn) SetDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadlines = append(r.deadlines, t)
	return nil
}

func (r *recConn) snapshot() ([][]byte, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.writes...), append([]time.Time(nil), r.deadlines...)
}

// TestGwConnJoinsSpilledPackets: x/crypto's 4096-byte buffer spill is held for the rest of
// its packet (then both go out in one writev); everything reaches the peer in order, and a
// lone 4096-byte write still goes out.
func TestGwConnJoinsSpilledPackets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var all bytes.Buffer
		b := make([]byte, 1<<16)
		for {
			n, err := c.Read(b)
			all.Write(b[:n])
			if err != nil {
				got <- all.Bytes()
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newGwConn(raw)
	spill := bytes.Repeat([]byte{'a'}, gwBufioSize)
	rest := bytes.Repeat([]byte{'b'}, 28<<10)
	small := []byte("small packet")
	for _, p := range [][]byte{spill, rest, small, spill} {
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the lone spill is flushed by the timer
	raw.(*net.TCPConn).CloseWrite()
	want := append(append(append(append([]byte(nil), spill...), rest...), small...), spill...)
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("the peer got %d bytes, want %d in order", len(b), len(want))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the peer got nothing")
	}
	c.Close()

	// Held data waits for the rest of its packet only: without a rest it goes out alone.
	// (The hold is lengthened here so a loaded machine cannot pass it before the check.)
	rc := &recConn{}
	c = newGwConn(rc)
	c.wait = 300 * time.Millisecond
	c.Write(spill)
	if w, _ := rc.snapshot(); len(w) != 0 {
		t.Fatalf("a spill was written before its rest could follow: %d writes", len(w))
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if w, _ := rc.snapshot(); len(w) == 1 && bytes.Equal(w[0], spill) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone spill was never written")
		}
		time.Sleep(time.Millisecond)
	}

	// Closing the connection writes held data first.
	rc = &recConn{}
	c = newGwConn(rc)
	c.Write(spill)
	c.Close()
	if w, _ := rc.snapshot(); len(w) != 1 || !bytes.Equal(w[0], spill) {
		t.Fatalf("Close lost a held spill: %d writes", len(w))
	}
}

// TestGwConnDeadlines: deadlines moving later by less than the slack are not re-armed;
// earlier, zero or much later ones are.
func TestGwConnDeadlines(t *testing.T) {
	rc := &recConn{}
	c := newGwConn(rc)
	t0 := time.Now().Add(30 * time.Minute)
	for _, d := range []time.Time{t0, t0.Add(time.Millisecond), t0.Add(500 * time.Millisecond), t0.Add(2 * time.Second),
		t0.Add(time.Second), {}, t0} {
		_ = c.SetDeadline(d)
	}
	_, ds := rc.snapshot()
	want := []time.Time{t0, t0.Add(2 * time.Second), t0.Add(time.Second), {}, t0}
	if len(ds) != len(want) {
		t.Fatalf("deadlines set %v, want %v", ds, want)
	}
	for i := range want {
		if !ds[i].Equal(want[i]) {
			t.Fatalf("deadlines set %v, want %v", ds, want)
		}
	}
}
