package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
)

// encodedCache keeps the JSON answer of one versioned value (see app.ListHostsVersioned), so
// a large listing that has not changed is written without being encoded again.
type encodedCache struct {
	mu   sync.Mutex
	ver  uint64
	body []byte
}

// write answers 200 with v encoded exactly as writeJSON would, reusing the encoding made
// for the same non-zero version.
func (c *encodedCache) write(w http.ResponseWriter, ver uint64, v any) {
	c.mu.Lock()
	body := c.body
	hit := ver != 0 && c.ver == ver && body != nil
	c.mu.Unlock()
	if !hit {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			writeJSON(w, http.StatusOK, v) // let writeJSON fail the way it always does
			return
		}
		body = buf.Bytes()
		if ver != 0 {
			c.mu.Lock()
			if ver > c.ver || c.body == nil {
				c.ver, c.body = ver, body
			}
			c.mu.Unlock()
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
