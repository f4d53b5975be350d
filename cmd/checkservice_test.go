package cmd

import (
	"io"
	"strings"
	"testing"
)

func TestCheckServiceFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--zone", "check.test", "--answer-ip", "::1"},
		{"--zone", "check.test", "extra"},
		{"--nope"},
	} {
		if err := CheckService(args, io.Discard, io.Discard); err == nil {
			t.Errorf("%s: no error", strings.Join(args, " "))
		}
	}
}
