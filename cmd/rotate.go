package cmd

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"regexp"
	"strings"
	"syscall"
)

// jwtSecretLine matches an ADMIN_JWT_SECRET line of an env file (with or without export).
var jwtSecretLine = regexp.MustCompile(`^(\s*(?:export\s+)?)ADMIN_JWT_SECRET\s*=`)

// newJWTSecret is 48 characters of [A-Za-z0-9] (about 285 bits), like the seed's
// `head -c 48 /dev/urandom | base64 | tr -d '=+/' | head -c 48`.
func newJWTSecret() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 48)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b), nil
}

// RotateJWTSecret writes a new ADMIN_JWT_SECRET into an env file in place ("rotate-jwt-secret"):
// every ADMIN_JWT_SECRET line gets the new value (one is appended when there is none), the
// other lines stay as they are, and the file is replaced atomically with mode 0600 (and its
// owner kept). The running server keeps the old secret until it restarts.
func RotateJWTSecret(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rotate-jwt-secret", "rotate-jwt-secret --env-file FILE\n\n"+
		"Writes a new random ADMIN_JWT_SECRET into the env file, keeping its other lines. Restart the\n"+
		"server afterwards (systemctl restart cloud-cli-proxy-control-plane): every issued login JWT is\n"+
		"then rejected; access tokens keep working.", stderr)
	envFile := fs.String("env-file", getenv("ENV_FILE"), "the server's env file (ENV_FILE)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *envFile == "" {
		return errors.New("rotate-jwt-secret: --env-file FILE is required")
	}
	fi, err := os.Stat(*envFile)
	if err != nil {
		return fmt.Errorf("rotate-jwt-secret: %w", err)
	}
	old, err := os.ReadFile(*envFile)
	if err != nil {
		return fmt.Errorf("rotate-jwt-secret: %w", err)
	}
	secret, err := newJWTSecret()
	if err != nil {
		return err
	}
	text := string(old)
	lines := strings.SplitAfter(text, "\n")
	found := 0
	for i, l := range lines {
		if m := jwtSecretLine.FindStringSubmatch(l); m != nil {
			nl := ""
			if strings.HasSuffix(l, "\n") {
				nl = "\n"
			}
			lines[i] = m[1] + "ADMIN_JWT_SECRET=" + secret + nl
			found++
		}
	}
	text = strings.Join(lines, "")
	if found == 0 {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += "ADMIN_JWT_SECRET=" + secret + "\n"
	}
	check := func(tmp string) error { // the new file must load as the server will load it
		if _, err := readEnvFile(tmp); err != nil {
			return fmt.Errorf("%s would not load afterwards: %w", *envFile, err)
		}
		return nil
	}
	if err := replaceFile(*envFile, []byte(text), fi, check); err != nil {
		return fmt.Errorf("rotate-jwt-secret: %w", err)
	}
	fmt.Fprintf(stdout, "ADMIN_JWT_SECRET replaced in %s (mode 0600).\nRestart the server to use it: systemctl restart cloud-cli-proxy-control-plane\n"+
		"After the restart every issued login JWT is rejected; access tokens keep working.\n", *envFile)
	return nil
}

// replaceFile atomically replaces path with data, mode 0600, keeping the owner of the file
// it replaces (when this process may); check sees the new file before it takes the name.
func replaceFile(path string, data []byte, was os.FileInfo, check func(tmp string) error) error {
	_, err := writeFileAtomic(path, func(f *os.File) error {
		if st, ok := was.Sys().(*syscall.Stat_t); ok {
			_ = f.Chown(int(st.Uid), int(st.Gid)) // only root may; otherwise it is ours already
		}
		return nil
	}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, check)
	return err
}
