package storage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// A backup file is three parts:
//
//	CLOUD-CLI-PROXY-BACKUP\n                         the magic line
//	{"format":1,"schema_version":1,...,"sha256":…}\n the header, one JSON line
//	gzip(tar(cloud-cli-proxy.db, secret files))     the payload
//
// The header names the schema version of the database and the SHA-256 of the content (see
// contentDigest), so a reader refuses a file from a newer schema before decompressing
// anything, and a corrupt or truncated file before restoring anything. The database entry is
// one bbolt read transaction: a consistent snapshot, taken while writers go on. The content
// is read twice inside that transaction, once to hash it and once to send it, so the
// checksum can lead the stream (hashing costs far less than gzip).
// `tail -n +3 FILE | gunzip | tar t` lists it.

const (
	backupMagic  = "CLOUD-CLI-PROXY-BACKUP\n"
	backupFormat = 1
	maxHeaderLen = 64 << 10
	// DBFileName is the database file's name inside the data dir and inside a backup.
	DBFileName = "cloud-cli-proxy.db"
	// gzipLevel trades size for speed: a backup runs beside a serving server.
	gzipLevel = gzip.BestSpeed
)

var (
	// ErrBackupCorrupt is returned for a backup file that fails its checksum or structure.
	ErrBackupCorrupt = errors.New("backup file is corrupt")
	// ErrNotBackup is returned for a file that is not a cloud-cli-proxy backup.
	ErrNotBackup = errors.New("not a cloud-cli-proxy backup file")
	// ErrServerRunning is returned by Restore when a process holds the data dir's database.
	ErrServerRunning = errors.New("the server is running (it holds the database lock); stop it first")
)

// BackupHeader describes a backup file.
type BackupHeader struct {
	Format        int       `json:"format"`
	SchemaVersion int       `json:"schema_version"`
	CreatedAt     time.Time `json:"created_at"`
	Program       string    `json:"program,omitempty"` // version of the program that wrote it
	Compression   string    `json:"compression"`
	SHA256        string    `json:"sha256"` // of the content: see contentDigest
	DBSize        int64     `json:"db_size"`
	Files         []string  `json:"files"` // tar entries, the database first
}

// LatestSchemaVersion is the schema version this program writes and the newest it opens.
func LatestSchemaVersion() int { return migrations[len(migrations)-1].version }

// BackupOptions tunes WriteBackup.
type BackupOptions struct {
	// Program is recorded in the header (the writer's version).
	Program string
	// Files names files in the database's directory carried along (secrets: the JWT
	// secret, the access-token hash key, the SSH host key). A missing file is skipped.
	Files []string
}

// SetBackupFiles sets the files of the database's directory every backup carries (see
// BackupOptions.Files) and the program version recorded in the header.
func (d *DB) SetBackupFiles(program string, names ...string) {
	d.backupProgram = program
	d.backupFiles = append([]string(nil), names...)
}

// Snapshot writes a backup of the live database (and the files set with SetBackupFiles) to
// w; it implements app.Snapshotter.
func (d *DB) Snapshot(ctx context.Context, w io.Writer) (app.BackupInfo, error) {
	cw := &countWriter{w: w}
	h, err := d.WriteBackup(ctx, cw, BackupOptions{Program: d.backupProgram, Files: d.backupFiles})
	return app.BackupInfo{SchemaVersion: h.SchemaVersion, Bytes: cw.n, SHA256: h.SHA256, CreatedAt: h.CreatedAt, DBSize: h.DBSize}, err
}

// WriteBackup writes a backup of the live database to w in one read transaction. Writers
// are not blocked while it runs (but a writer that must grow the memory map waits for it:
// bbolt remaps only without readers).
func (d *DB) WriteBackup(ctx context.Context, w io.Writer, opts BackupOptions) (BackupHeader, error) {
	return writeBackup(ctx, d.db, filepath.Dir(d.path), w, opts)
}

// BackupPath writes a backup of the database file at path, which no server may be using
// (the file is opened read-only, sharing its lock only with readers).
func BackupPath(ctx context.Context, path string, w io.Writer, opts BackupOptions) (BackupHeader, error) {
	bdb, err := bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if errors.Is(err, berrors.ErrTimeout) {
		return BackupHeader{}, fmt.Errorf("storage: backup %s: %w", path, ErrServerRunning)
	}
	if err != nil {
		return BackupHeader{}, fmt.Errorf("storage: backup: open %s: %w", path, err)
	}
	defer bdb.Close()
	return writeBackup(ctx, bdb, filepath.Dir(path), w, opts)
}

type extraFile struct {
	name string
	data []byte
}

func writeBackup(ctx context.Context, bdb *bolt.DB, dir string, w io.Writer, opts BackupOptions) (BackupHeader, error) {
	var extras []extraFile
	for _, name := range opts.Files {
		if !safeEntryName(name) || name == DBFileName {
			return BackupHeader{}, fmt.Errorf("storage: backup: bad file name %q", name)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return BackupHeader{}, fmt.Errorf("storage: backup: %w", err)
		}
		extras = append(extras, extraFile{name, b})
	}
	var h BackupHeader
	err := bdb.View(func(btx *bolt.Tx) error {
		h = BackupHeader{
			Format: backupFormat, SchemaVersion: readVersion(btx.Bucket(bMeta)),
			CreatedAt: time.Now().UTC().Truncate(time.Second), Program: opts.Program,
			Compression: "gzip", DBSize: btx.Size(), Files: []string{DBFileName},
		}
		for _, e := range extras {
			h.Files = append(h.Files, e.name)
		}
		// Pass 1: the digest of the content (cheap next to compressing it).
		sum, err := contentDigest(ctx, btx, extras)
		if err != nil {
			return err
		}
		h.SHA256 = sum
		// Pass 2: the header, then the compressed payload.
		hj, err := json.Marshal(h)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, backupMagic+string(hj)+"\n"); err != nil {
			return err
		}
		zw, err := gzip.NewWriterLevel(w, gzipLevel)
		if err != nil {
			return err
		}
		if err := writePayload(ctx, btx, extras, h.CreatedAt, zw); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return h, fmt.Errorf("storage: backup: %w", err)
	}
	return h, nil
}

// contentDigest is the SHA-256 of what a backup holds: every bucket, key and value of the
// database in order, then each carried file's name and bytes, each item length-prefixed.
// It is not a digest of the database file's bytes: pages no longer reachable from the
// snapshot may be rewritten by concurrent writers while it is copied, so only the content
// is stable. The restore side recomputes it from the extracted files; gzip's CRC-32 covers
// the raw bytes besides.
func contentDigest(ctx context.Context, btx *bolt.Tx, extras []extraFile) (string, error) {
	d := sha256.New()
	var lb [binary.MaxVarintLen64]byte
	item := func(tag byte, parts ...[]byte) {
		d.Write([]byte{tag})
		for _, p := range parts {
			d.Write(lb[:binary.PutUvarint(lb[:], uint64(len(p)))])
			d.Write(p)
		}
	}
	n := 0
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					item('B', k)
					if err := walk(nb); err != nil {
						return err
					}
					item('E')
					return nil
				}
			}
			item('K', k, v)
			return nil
		})
	}
	err := btx.ForEach(func(name []byte, b *bolt.Bucket) error {
		item('B', name)
		if err := walk(b); err != nil {
			return err
		}
		item('E')
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, e := range extras {
		item('F', []byte(e.name), e.data)
	}
	return hex.EncodeToString(d.Sum(nil)), nil
}

// writePayload writes the tar stream: the database as seen by btx, then the extra files.
// Everything in it is fixed by its inputs, so two calls write the same bytes.
func writePayload(ctx context.Context, btx *bolt.Tx, extras []extraFile, mtime time.Time, w io.Writer) error {
	tw := tar.NewWriter(&ctxWriter{ctx: ctx, w: w})
	if err := tw.WriteHeader(&tar.Header{Name: DBFileName, Mode: int64(fileMode), Size: btx.Size(), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if n, err := btx.WriteTo(tw); err != nil {
		return err
	} else if n != btx.Size() {
		return fmt.Errorf("database copy is %d bytes, want %d", n, btx.Size())
	}
	for _, e := range extras {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: int64(fileMode), Size: int64(len(e.data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// safeEntryName accepts a plain file name: no directories, no dot files.
func safeEntryName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, ".") && len(name) <= 255
}

// ReadBackupHeader reads the magic line and the header of a backup and checks that this
// program can restore it: a file from a newer schema (or format) is ErrSchemaTooNew.
func ReadBackupHeader(r *bufio.Reader) (BackupHeader, error) {
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != backupMagic {
		return BackupHeader{}, ErrNotBackup
	}
	line, err := r.ReadSlice('\n')
	if err != nil || len(line) > maxHeaderLen {
		return BackupHeader{}, fmt.Errorf("%w: unreadable header", ErrBackupCorrupt)
	}
	var h BackupHeader
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&h); err != nil {
		return BackupHeader{}, fmt.Errorf("%w: unreadable header: %v", ErrBackupCorrupt, err)
	}
	if h.Format > backupFormat {
		return h, fmt.Errorf("%w: backup format %d, this program reads up to %d; upgrade the program", ErrSchemaTooNew, h.Format, backupFormat)
	}
	if h.Format < 1 || h.Compression != "gzip" || len(h.SHA256) != 64 || len(h.Files) == 0 || h.Files[0] != DBFileName {
		return h, fmt.Errorf("%w: header is incomplete", ErrBackupCorrupt)
	}
	if h.SchemaVersion > LatestSchemaVersion() {
		return h, fmt.Errorf("%w: backup has schema version %d, this program knows up to %d; restore it with a newer program",
			ErrSchemaTooNew, h.SchemaVersion, LatestSchemaVersion())
	}
	return h, nil
}

// ExtractBackup reads a backup from r, writes its files into dir as temporary files (named
// ".restore-*", mode 0600) and checks everything: the header, the payload's size and SHA-256,
// the tar structure, and the database (bbolt's consistency check, its schema version equal
// to the header's). It returns the header and the temporary path of each entry; on error it
// leaves nothing behind.
func ExtractBackup(r io.Reader, dir string) (h BackupHeader, files map[string]string, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if h, err = ReadBackupHeader(br); err != nil {
		return h, nil, err
	}
	files = map[string]string{}
	made := files // the return statements below may nil out files before this runs
	defer func() {
		if err != nil {
			for _, p := range made {
				_ = os.Remove(p)
			}
		}
	}()
	corrupt := func(format string, args ...any) error {
		if len(args) == 1 { // an error already marked keeps its one mark
			if e, ok := args[0].(error); ok && errors.Is(e, ErrBackupCorrupt) {
				return e
			}
		}
		return fmt.Errorf("%w: %s", ErrBackupCorrupt, fmt.Sprintf(format, args...))
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return h, nil, corrupt("payload: %v", err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(corruptReader{zr})
	want := map[string]bool{}
	for _, n := range h.Files {
		want[n] = true
	}
	for i := 0; ; i++ {
		th, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return h, nil, corrupt("payload: %v", err)
		}
		if !safeEntryName(th.Name) || !want[th.Name] || files[th.Name] != "" || th.Typeflag != tar.TypeReg || (i == 0) != (th.Name == DBFileName) {
			return h, nil, corrupt("unexpected entry %q", th.Name)
		}
		f, err := os.CreateTemp(dir, ".restore-"+th.Name+"-*")
		if err != nil {
			return h, nil, err
		}
		files[th.Name] = f.Name()
		_, err = io.Copy(f, tr)
		if err == nil {
			err = f.Chmod(fileMode)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if errors.Is(err, ErrBackupCorrupt) {
				return h, nil, err
			}
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
				return h, nil, corrupt("payload: %v", err)
			}
			return h, nil, err // writing the file
		}
	}
	// The rest of the gzip stream (tar's end padding): a truncated stream or a bad gzip
	// CRC-32 shows here.
	if _, err := io.Copy(io.Discard, corruptReader{zr}); err != nil {
		return h, nil, corrupt("payload: %v", err)
	}
	var extras []extraFile
	for _, n := range h.Files {
		if files[n] == "" {
			return h, nil, corrupt("entry %q is missing", n)
		}
		if n != DBFileName {
			b, err := os.ReadFile(files[n])
			if err != nil {
				return h, nil, err
			}
			extras = append(extras, extraFile{n, b})
		}
	}
	if err := checkDBFile(files[DBFileName], h, extras); err != nil {
		return h, nil, err
	}
	return h, files, nil
}

// checkDBFile opens an extracted database read-only, runs bbolt's consistency check and
// compares the content's digest (with the carried files) with the header's.
func checkDBFile(path string, h BackupHeader, extras []extraFile) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() != h.DBSize {
		return fmt.Errorf("%w: database is %d bytes, the header says %d", ErrBackupCorrupt, fi.Size(), h.DBSize)
	}
	bdb, err := bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: database does not open: %v", ErrBackupCorrupt, err)
	}
	defer bdb.Close()
	return bdb.View(func(btx *bolt.Tx) error {
		for err := range btx.Check() {
			return fmt.Errorf("%w: database check: %v", ErrBackupCorrupt, err)
		}
		if v := readVersion(btx.Bucket(bMeta)); v != h.SchemaVersion {
			if v > LatestSchemaVersion() {
				return fmt.Errorf("%w: database has schema version %d, this program knows up to %d", ErrSchemaTooNew, v, LatestSchemaVersion())
			}
			return fmt.Errorf("%w: database has schema version %d, the header says %d", ErrBackupCorrupt, v, h.SchemaVersion)
		}
		got, err := contentDigest(context.Background(), btx, extras)
		if err != nil {
			return err
		}
		if got != h.SHA256 {
			return fmt.Errorf("%w: checksum mismatch: content sha256 %s, the header says %s", ErrBackupCorrupt, got, h.SHA256)
		}
		return nil
	})
}

// VerifyBackupFile checks the backup at path completely (see ExtractBackup), extracting
// into a temporary directory under tmpDir ("" is the system's) that it removes again.
func VerifyBackupFile(path, tmpDir string) (BackupHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return BackupHeader{}, err
	}
	defer f.Close()
	dir, err := os.MkdirTemp(tmpDir, "cloud-cli-proxy-verify-")
	if err != nil {
		return BackupHeader{}, err
	}
	defer os.RemoveAll(dir)
	h, _, err := ExtractBackup(f, dir)
	return h, err
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	Header   BackupHeader
	Restored []string          // files now in the data dir from the backup
	KeptAs   map[string]string // previous file -> where it was kept aside
}

// RestoreOptions tunes Restore.
type RestoreOptions struct {
	// DBOnly restores the database and leaves the data dir's other files as they are.
	DBOnly bool
	// Now names the kept-aside files; zero means time.Now.
	Now time.Time
}

// Restore restores the backup at path into dataDir (created 0700 if missing), whose server
// must be stopped. It verifies everything first (see ExtractBackup) and changes nothing when
// that fails. Each file it replaces is kept aside as NAME.pre-restore-TIMESTAMP (an
// identical one is left alone).
func Restore(path, dataDir string, opts RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return res, err
	}
	dbPath := filepath.Join(dataDir, DBFileName)
	unlock, err := lockStopped(dbPath)
	if err != nil {
		return res, err
	}
	defer unlock()
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	h, files, err := ExtractBackup(f, dataDir)
	res.Header = h
	if err != nil {
		return res, err
	}
	defer func() {
		for _, p := range files {
			_ = os.Remove(p) // the ones not moved into place
		}
	}()
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	suffix := ".pre-restore-" + now.UTC().Format("20060102T150405Z")
	res.KeptAs = map[string]string{}
	for _, name := range h.Files {
		if opts.DBOnly && name != DBFileName {
			continue
		}
		dst := filepath.Join(dataDir, name)
		if old, err := os.ReadFile(dst); err == nil {
			if name != DBFileName && sameFile(files[name], old) {
				continue
			}
			if err := os.Rename(dst, dst+suffix); err != nil {
				return res, err
			}
			res.KeptAs[dst] = dst + suffix
		} else if !errors.Is(err, os.ErrNotExist) {
			return res, err
		}
		if err := os.Rename(files[name], dst); err != nil {
			return res, err
		}
		delete(files, name)
		res.Restored = append(res.Restored, dst)
	}
	if d, err := os.Open(dataDir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return res, nil
}

func sameFile(path string, data []byte) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, data)
}

// lockStopped makes sure no process holds the database at dbPath, and holds its lock
// (shared) until unlock, so a server started meanwhile waits. A missing file is fine.
func lockStopped(dbPath string) (unlock func(), err error) {
	if _, err := os.Stat(dbPath); errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	bdb, err := bolt.Open(dbPath, fileMode, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, ErrServerRunning
	}
	if err != nil {
		// A damaged current database must not stop a restore: only the lock matters.
		return func() {}, nil
	}
	return func() { _ = bdb.Close() }, nil
}

// corruptReader marks every error reading the payload (bad deflate data, a bad CRC, a
// truncated stream) as ErrBackupCorrupt, apart from errors writing the extracted files.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: payload: %w", ErrBackupCorrupt, err)
	}
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxWriter stops a long copy once its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
