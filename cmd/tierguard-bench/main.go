// Command tierguard-bench measures tierguard's /authz/check against OPA's
// own server, `opa run --server`, on one machine in one run: the same
// policy and data, the same inputs, interleaved repetitions at a fixed
// concurrency, and every answer checked against full evaluation. It also
// measures the decision table in process, against OPA's prepared
// evaluation, and the swap of a large policy while decisions are in
// flight. It prints Markdown tables and a PASS/MISS line per target of
// issue 6; the targets are ratios within the run, never absolute numbers.
//
//	go run ./cmd/tierguard-bench                 the full run, about 5 minutes
//	go run ./cmd/tierguard-bench -reps 9         more repetitions on a noisy machine
//
// It runs the OPA CLI that go.mod pins as a tool (the binary `go tool opa`
// runs) and a tierguard it builds into a temporary directory, listens
// only on 127.0.0.1, and stops every process it started when it ends,
// also on Ctrl-C. It is no part of the test command; a smoke test of a few
// seconds runs it briefly there, so it cannot rot.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	duration  time.Duration // one repetition against one server
	warmup    time.Duration // unmeasured load before a row's repetitions
	reps      int
	conns     int
	routes    []int // route table sizes
	benchtime time.Duration
	timeout   time.Duration
	keep      bool // keep the work directory, for a look at the logs
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("tierguard-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "length of one repetition against one server")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load on each server before a row")
	fs.IntVar(&o.reps, "reps", 5, "repetitions per row and server, interleaved; the table shows medians")
	fs.IntVar(&o.conns, "conns", 16, "concurrent connections (and workers) per server")
	routes := fs.String("routes", "10,100,1000,10000", "route table sizes, comma-separated")
	fs.DurationVar(&o.benchtime, "benchtime", time.Second, "run time of each in-process benchmark")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after this long")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, policies, server logs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*routes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 4 {
			return o, fmt.Errorf("-routes: %q is not a route count of at least 4", s)
		}
		o.routes = append(o.routes, n)
	}
	if o.reps < 1 || o.conns < 1 || o.duration <= 0 {
		return o, errors.New("-reps, -conns and -duration must be positive")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tierguard-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tierguard-bench:", err)
		stop()
		os.Exit(1)
	}
}
