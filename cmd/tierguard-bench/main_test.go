package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole bench once, very briefly, so that it cannot rot:
// both builds, every row against real servers, every answer checked. The
// numbers mean nothing at this length.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds OPA and tierguard and starts five servers")
	}
	o, err := parseFlags([]string{"-duration", "100ms", "-warmup", "50ms", "-reps", "1",
		"-routes", "10", "-benchtime", "20ms", "-timeout", "3m"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	if err := run(ctx, o, &out, &log); err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}
	for _, want := range []string{"| single check |", "| batch of 100 |", "| 10 routes |",
		"| bearer, no cache |", "| Revision.Lookup", "### Targets"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, args := range [][]string{{"-routes", "10,x"}, {"-routes", "2"}, {"-reps", "0"}, {"extra"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) = nil error, want one", args)
		}
	}
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || o.conns != 16 || o.reps != 5 || len(o.routes) != 4 {
		t.Errorf("parseFlags(nil) = %+v, %v; want 16 connections, 5 repetitions, 4 sizes", o, err)
	}
}
