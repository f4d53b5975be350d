package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Stats summarises one measurement: how many operations completed in how long, and the
// distribution of their latencies.
type Stats struct {
	N    int
	Errs int
	Wall time.Duration
	P50  time.Duration
	P99  time.Duration
	Max  time.Duration
	Mean time.Duration
}

// Rate is operations per second over the wall time of the run.
func (s Stats) Rate() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return float64(s.N) / s.Wall.Seconds()
}

// summarize sorts lat in place and computes the percentiles (nearest rank).
func summarize(lat []time.Duration, wall time.Duration, errs int) Stats {
	st := Stats{N: len(lat), Errs: errs, Wall: wall}
	if len(lat) == 0 {
		return st
	}
	slices.Sort(lat)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(lat))+0.5) - 1
		return lat[max(0, min(i, len(lat)-1))]
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	st.P50, st.P99, st.Max, st.Mean = rank(0.50), rank(0.99), lat[len(lat)-1], sum/time.Duration(len(lat))
	return st
}

// Load is one closed-loop HTTP load: Clients goroutines, each with one keep-alive
// connection, send GET URL back to back until Duration has passed or MaxRequests have been
// sent, whichever comes first.
type Load struct {
	URL         string
	Header      http.Header
	Clients     int
	Duration    time.Duration
	MaxRequests int
	// Want is the exact body every answer must have (status 200); a mismatch is an error.
	Want []byte
}

// newClient makes an HTTP client that keeps one idle connection per load goroutine to the
// loopback server (no proxy from the environment, no compression).
func newClient(conns int) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr
}

// fetch does one GET and returns status and body.
func fetch(ctx context.Context, c *http.Client, url string, h http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// sample is the raw outcome of one stretch of load.
type sample struct {
	lat  []time.Duration
	wall time.Duration
	errs int
}

func (a *sample) add(b sample) {
	a.lat = append(a.lat, b.lat...)
	a.wall += b.wall
	a.errs += b.errs
}

func (a sample) stats() Stats { return summarize(a.lat, a.wall, a.errs) }

// warm opens every connection and lets both sides reach a steady state.
func (l Load) warm(ctx context.Context, client *http.Client) error {
	_, err := l.run(ctx, client, l.Duration/5, max(l.Clients*4, l.MaxRequests/10))
	return err
}

func (l Load) run(ctx context.Context, client *http.Client, d time.Duration, maxReq int) (sample, error) {
	var sent atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	lats := make([][]time.Duration, l.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range l.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URL, nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			for k, v := range l.Header {
				req.Header[k] = v
			}
			buf := bytes.NewBuffer(make([]byte, 0, len(l.Want)+4096))
			my := make([]time.Duration, 0, maxReq/l.Clients+16)
			for ctx.Err() == nil && sent.Add(1) <= int64(maxReq) && time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				lat := time.Since(t0)
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(buf.Bytes(), l.Want) {
					errs.Add(1)
					if err == nil {
						err = fmt.Errorf("GET %s: status %d, %d bytes (want 200, %d identical bytes)", l.URL, resp.StatusCode, buf.Len(), len(l.Want))
					}
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				my = append(my, lat)
			}
			lats[i] = my
		}()
	}
	wg.Wait()
	out := sample{wall: time.Since(start), errs: int(errs.Load())}
	for _, l := range lats {
		out.lat = append(out.lat, l...)
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return out, err
	}
	return out, ctx.Err()
}

// Interleave measures loads a and b (typically baseline and ours) in alternating rounds, so a
// change in the machine's load during the run (other processes, CPU frequency) affects both
// alike. Each gets Duration and MaxRequests in total, after a warm-up of its own.
func Interleave(ctx context.Context, rounds int, a, b Load, afterWarm func()) (Stats, Stats, error) {
	ca, tra := newClient(a.Clients)
	defer tra.CloseIdleConnections()
	cb, trb := newClient(b.Clients)
	defer trb.CloseIdleConnections()
	if err := a.warm(ctx, ca); err != nil {
		return Stats{}, Stats{}, fmt.Errorf("warm-up %s: %w", a.URL, err)
	}
	if err := b.warm(ctx, cb); err != nil {
		return Stats{}, Stats{}, fmt.Errorf("warm-up %s: %w", b.URL, err)
	}
	if afterWarm != nil {
		afterWarm()
	}
	var sa, sb sample
	for range rounds {
		s, err := a.run(ctx, ca, a.Duration/time.Duration(rounds), a.MaxRequests/rounds)
		if err != nil {
			return Stats{}, Stats{}, err
		}
		sa.add(s)
		if s, err = b.run(ctx, cb, b.Duration/time.Duration(rounds), b.MaxRequests/rounds); err != nil {
			return Stats{}, Stats{}, err
		}
		sb.add(s)
	}
	return sa.stats(), sb.stats(), nil
}

// serverTimer records, per path, how long the wrapped handler took: the server's own time
// on a request, without the client's and the network's, and without queueing before the
// handler starts.
type serverTimer struct {
	mu  sync.Mutex
	lat map[string][]time.Duration
	on  atomic.Bool
}

func newServerTimer() *serverTimer { return &serverTimer{lat: map[string][]time.Duration{}} }

func (t *serverTimer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.on.Load() {
			h.ServeHTTP(w, r)
			return
		}
		t0 := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(t0)
		t.mu.Lock()
		t.lat[r.URL.Path] = append(t.lat[r.URL.Path], d)
		t.mu.Unlock()
	})
}

// start clears the records and starts recording.
func (t *serverTimer) start() {
	t.mu.Lock()
	clear(t.lat)
	t.mu.Unlock()
	t.on.Store(true)
}

// stats stops recording and summarises the path's records.
func (t *serverTimer) stats(path string) Stats {
	t.on.Store(false)
	t.mu.Lock()
	defer t.mu.Unlock()
	return summarize(slices.Clone(t.lat[path]), 0, 0)
}

// bareServer serves body (with the given content type) on path from a bare httprouter
// handler on its own loopback listener: the floor an HTTP server in this process can reach
// for the same bytes.
func bareServer(path, contentType string, body []byte, timer *serverTimer) (url string, stop func(), err error) {
	return serveLoopback(timer.wrap(bareHandler(path, contentType, body)))
}

// serveLoopback serves h on 127.0.0.1 on a free port.
func serveLoopback(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
