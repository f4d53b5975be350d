package cmd

import (
	"io"
	"os"
	"path/filepath"
)

// writeFileAtomic writes path through write: a temporary file beside it (mode 0600, handed
// to prepare first when set), fsynced, shown to check when set, then renamed over path and
// the directory synced, so readers see the old file or the whole new one. It returns the
// bytes written. Backups and the env file's secret rotation both write this way.
func writeFileAtomic(path string, prepare func(*os.File) error, write func(io.Writer) error, check func(tmp string) error) (n int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return 0, err
	}
	if prepare != nil {
		if err = prepare(f); err != nil {
			return 0, err
		}
	}
	cw := &countingWriter{w: f}
	if err = write(cw); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if check != nil {
		if err = check(tmp); err != nil {
			return 0, err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
