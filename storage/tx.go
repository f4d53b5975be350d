package storage

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// tx implements app.Tx on one bbolt transaction.
type tx struct {
	tx *bolt.Tx
}

var _ app.Tx = (*tx)(nil)

func (t *tx) bucket(name []byte) *bolt.Bucket {
	b := t.tx.Bucket(name)
	if b == nil {
		// Open's migrations create every bucket; a missing one is a programming error.
		panic(fmt.Sprintf("storage: bucket %q missing", name))
	}
	return b
}

// Errors.

func notFound(what string) error {
	return &app.Error{Kind: app.KindNotFound, Code: app.CodeNotFound, Message: what + " not found"}
}

func conflict(code app.ErrorCode, msg string) error {
	return &app.Error{Kind: app.KindConflict, Code: code, Message: msg}
}

func requireID(what, id string) error {
	if id == "" {
		return &app.Error{Kind: app.KindInvalid, Code: app.CodeInvalidID, Field: "id", Message: what + " id is required"}
	}
	return nil
}

// Keys.

var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64)
)

// timeKey maps t to unix nanoseconds, clamped so that the byte order of keys is the time
// order: zero and pre-1970 times become 0, times past 2262 become MaxInt64.
func timeKey(t time.Time) uint64 {
	switch {
	case t.IsZero() || !t.After(minTime):
		return 0
	case !t.Before(maxTime):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// join concatenates parts into a fresh slice.
func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var sep = []byte{0}

// prefix is s 0x00, the prefix of every composite key whose first part is s.
func prefix(s string) []byte { return join([]byte(s), sep) }

// pair is the composite key a 0x00 b, or nil when a or b is empty (nothing is indexed).
func pair(a, b string) []byte {
	if a == "" || b == "" {
		return nil
	}
	return join([]byte(a), sep, []byte(b))
}

// single is the key s, or nil when s is empty.
func single(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

var empty = []byte{}

// Records.

func getRecord[T any](b *bolt.Bucket, id, what string) (T, error) {
	var v T
	if id == "" {
		return v, notFound(what)
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return v, notFound(what)
	}
	if err := decodeRecord(raw, &v); err != nil {
		return v, fmt.Errorf("storage: decode %s %q: %w", what, id, err)
	}
	return v, nil
}

// getOld returns the stored record with id and whether it exists.
func getOld[T any](b *bolt.Bucket, id, what string) (T, bool, error) {
	v, err := getRecord[T](b, id, what)
	if err != nil {
		if app.AsError(err).Kind == app.KindNotFound {
			return v, false, nil
		}
		return v, false, err
	}
	return v, true, nil
}

func putRecord(b *bolt.Bucket, id string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("storage: encode %q: %w", id, err)
	}
	return b.Put([]byte(id), raw)
}

// byUnique follows a unique index entry to its record.
func byUnique[T any](t *tx, idx, records []byte, key []byte, what string) (T, error) {
	var zero T
	if len(key) == 0 {
		return zero, notFound(what)
	}
	id := t.bucket(idx).Get(key)
	if id == nil {
		return zero, notFound(what)
	}
	return getRecord[T](t.bucket(records), string(id), what)
}

func listAll[T any](b *bolt.Bucket, what string) ([]T, error) {
	out := make([]T, 0)
	err := b.ForEach(func(k, v []byte) error {
		var r T
		if err := decodeRecord(v, &r); err != nil {
			return fmt.Errorf("storage: decode %s %q: %w", what, k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// listByPrefix returns the records named by the non-unique index entries "p 0x00 id".
func listByPrefix[T any](idx, records *bolt.Bucket, p []byte, what string) ([]T, error) {
	out := make([]T, 0)
	c := idx.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		r, err := getRecord[T](records, string(k[len(p):]), what)
		if err != nil {
			return nil, fmt.Errorf("storage: index %s: %w", p, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// checkUnique fails with a conflict when key is indexed to a record other than id.
func checkUnique(b *bolt.Bucket, key []byte, id string, code app.ErrorCode, msg string) error {
	if len(key) == 0 {
		return nil
	}
	if v := b.Get(key); v != nil && string(v) != id {
		return conflict(code, msg)
	}
	return nil
}

// reindex replaces the index entry oldKey with newKey -> val. Nil keys mean "no entry".
func reindex(b *bolt.Bucket, oldKey, newKey, val []byte) error {
	if len(oldKey) > 0 && !bytes.Equal(oldKey, newKey) {
		if err := b.Delete(oldKey); err != nil {
			return err
		}
	}
	if len(newKey) > 0 {
		return b.Put(newKey, val)
	}
	return nil
}

func unindex(b *bolt.Bucket, key []byte) error {
	if len(key) == 0 {
		return nil
	}
	return b.Delete(key)
}

// sortByCreated orders records by creation time, then id, for stable listings.
func sortByCreated[T any](s []T, created func(T) time.Time, id func(T) string) {
	slices.SortFunc(s, func(a, b T) int {
		if c := created(a).Compare(created(b)); c != 0 {
			return c
		}
		return cmp.Compare(id(a), id(b))
	})
}

// lastWithPrefix positions c on the last key starting with p (nil if there is none).
func lastWithPrefix(c *bolt.Cursor, p []byte) []byte {
	var k []byte
	if succ := successor(p); succ == nil {
		k, _ = c.Last()
	} else if k, _ = c.Seek(succ); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, p) {
		return nil
	}
	return k
}

// successor is the smallest key greater than every key with prefix p, nil if unbounded.
func successor(p []byte) []byte {
	s := bytes.Clone(p)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}
