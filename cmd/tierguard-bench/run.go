package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tierguard/tierguard/decision"
)

// row is one line of a table: samples[i][rep] for the row's i-th server.
type row struct {
	name    string
	servers []string
	samples [][]sample
	note    string // what the reader must know about this row
}

// bench holds one run's state: the work directory, the binaries and the
// processes to stop.
type bench struct {
	o    options
	work string
	bins binaries
	ps   procs
	log  io.Writer
	// loads are the 1-minute load averages seen as each row began.
	loads []float64
}

func run(ctx context.Context, o options, out, log io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	rep := report{o: o, started: time.Now(), loadBefore: loadAvg()}
	work, err := os.MkdirTemp("", "tierguard-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintf(log, "work directory kept: %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	b := &bench{o: o, work: work, log: log}
	defer b.ps.stopAll()

	if b.bins, err = build(ctx, work, log); err != nil {
		return err
	}

	fmt.Fprintln(log, "in process: table lookup against prepared evaluation, and a policy swap")
	if rep.inProcess, err = measureInProcess(ctx, o); err != nil {
		return err
	}

	if err := b.embeddedRows(ctx, &rep); err != nil {
		return err
	}
	if rep.routes, err = b.routesRows(ctx); err != nil {
		return err
	}
	rep.loadAfter = loadAvg()
	rep.rowLoads = b.loads
	rep.finished = time.Now()
	rep.write(out)
	return nil
}

// embeddedRows measures the embedded policy: a single check, batches of 10
// and 100, and the token rows.
func (b *bench) embeddedRows(ctx context.Context, rep *report) error {
	set, err := embeddedSet(ctx, filepath.Join(b.work, "embedded"))
	if err != nil {
		return err
	}
	tg, err := b.startTierguard(ctx, "tierguard", set, 0)
	if err != nil {
		return err
	}
	defer tg.stop()
	noCache, err := b.startTierguard(ctx, "tierguard-no-token-cache", set, -1)
	if err != nil {
		return err
	}
	defer noCache.stop()
	opa, err := b.startOPA(ctx, "opa", set)
	if err != nil {
		return err
	}
	defer opa.stop()

	single := []decision.Check{apiCheck("GET", "/api/videos/:id")}
	for _, n := range []int{1, 10, 100} {
		checks, name := single, "single check"
		if n > 1 {
			checks, name = batchChecks(set.tables, n), "batch of "+strconv.Itoa(n)
		}
		r, err := b.versusOPA(ctx, name, set, tg, opa, checks)
		if err != nil {
			return err
		}
		rep.embedded = append(rep.embedded, r)
	}

	if rep.tokens, err = b.tokenRows(ctx, set, tg, noCache, single); err != nil {
		return err
	}
	return checkLogs(tg, noCache)
}

// tokenRows compares tierguard with a bearer token (cache on), without a
// token, and with a bearer token and no cache. OPA verifies nothing, so it
// has no part here.
func (b *bench) tokenRows(ctx context.Context, set *policySet, tg, noCache *proc,
	checks []decision.Check) (row, error) {
	plus := decision.Subject{Authenticated: true, Subject: "bench@example.com",
		Claims: map[string]any{"tier": "plus"}}
	wantPlus, err := set.expected(ctx, plus, checks)
	if err != nil {
		return row{}, err
	}
	wantAnon, err := set.expected(ctx, decision.Subject{}, checks)
	if err != nil {
		return row{}, err
	}
	tokCache, err := devToken(ctx, tg.base, "plus")
	if err != nil {
		return row{}, err
	}
	tokNoCache, err := devToken(ctx, noCache.base, "plus")
	if err != nil {
		return row{}, err
	}
	cached, err := tierguardEndpoint(tg, checks, wantPlus, tokCache)
	if err != nil {
		return row{}, err
	}
	anonymous, err := tierguardEndpoint(tg, checks, wantAnon, "")
	if err != nil {
		return row{}, err
	}
	uncached, err := tierguardEndpoint(noCache, checks, wantPlus, tokNoCache)
	if err != nil {
		return row{}, err
	}
	return b.measure(ctx, "tokens", []string{"bearer, cache", "no token", "bearer, no cache"},
		cached, anonymous, uncached)
}

// routesRows measures a single check against generated policies of each
// size. Every size's pair of servers runs at once and the repetitions
// interleave all sizes, so that a change of load on the machine cannot
// pass for a difference between sizes.
func (b *bench) routesRows(ctx context.Context) ([]row, error) {
	var eps []endpoint
	var servers []string
	var notes []string
	var tgs []*proc
	for _, n := range b.o.routes {
		set, err := syntheticSet(ctx, filepath.Join(b.work, fmt.Sprintf("routes-%d", n)), n)
		if err != nil {
			return nil, err
		}
		tg, err := b.startTierguard(ctx, fmt.Sprintf("tierguard-%d-routes", n), set, 0)
		if err != nil {
			return nil, err
		}
		defer tg.stop()
		opa, err := b.startOPA(ctx, fmt.Sprintf("opa-%d-routes", n), set)
		if err != nil {
			return nil, err
		}
		defer opa.stop()

		checks := []decision.Check{syntheticProbe(n)}
		want, err := set.expected(ctx, decision.Subject{}, checks)
		if err != nil {
			return nil, err
		}
		te, err := tierguardEndpoint(tg, checks, want, "")
		if err != nil {
			return nil, err
		}
		oe, err := opaEndpoint(opa, checks, want)
		if err != nil {
			return nil, err
		}
		eps = append(eps, te, oe)
		size := thousands(float64(n))
		servers = append(servers, "tierguard "+size, "OPA "+size)
		notes = append(notes, tableNote(tg))
		tgs = append(tgs, tg)
	}

	all, err := b.measure(ctx, "routes", servers, eps...)
	if err != nil {
		return nil, err
	}
	if err := checkLogs(tgs...); err != nil {
		return nil, err
	}
	rows := make([]row, len(b.o.routes))
	for i, n := range b.o.routes {
		rows[i] = row{name: thousands(float64(n)) + " routes", servers: []string{"tierguard", "OPA"},
			samples: all.samples[2*i : 2*i+2], note: notes[i]}
	}
	return rows, nil
}

func tableNote(tg *proc) string {
	if tg.tableOff == "" {
		return ""
	}
	return "tierguard's decision table was disabled (" + tg.tableOff + "), so its column is full evaluation"
}

// versusOPA measures tierguard and OPA on the same checks from an
// anonymous caller.
func (b *bench) versusOPA(ctx context.Context, name string, set *policySet, tg, opa *proc,
	checks []decision.Check) (row, error) {
	want, err := set.expected(ctx, decision.Subject{}, checks)
	if err != nil {
		return row{}, err
	}
	te, err := tierguardEndpoint(tg, checks, want, "")
	if err != nil {
		return row{}, err
	}
	oe, err := opaEndpoint(opa, checks, want)
	if err != nil {
		return row{}, err
	}
	r, err := b.measure(ctx, name, []string{"tierguard", "OPA"}, te, oe)
	r.note = tableNote(tg)
	return r, err
}

// measure warms every endpoint up, then runs the repetitions interleaved:
// the first endpoint, the second, ..., then again.
func (b *bench) measure(ctx context.Context, name string, servers []string,
	eps ...endpoint) (row, error) {
	r := row{name: name, servers: servers, samples: make([][]sample, len(eps))}
	if l, err := strconv.ParseFloat(strings.Fields(loadAvg() + " x")[0], 64); err == nil {
		b.loads = append(b.loads, l)
	}
	for _, e := range eps {
		if _, err := drive(ctx, e, b.o.warmup, b.o.conns); err != nil {
			return r, fmt.Errorf("%s, warm-up: %w", name, err)
		}
	}
	for rep := range b.o.reps {
		for i, e := range eps {
			s, err := drive(ctx, e, b.o.duration, b.o.conns)
			if err != nil {
				return r, fmt.Errorf("%s: %w", name, err)
			}
			r.samples[i] = append(r.samples[i], s)
			fmt.Fprintf(b.log, "%-14s %-17s rep %d: %10.0f decisions/s  p50 %-9s p99 %-9s CPU/decision %s\n",
				name, servers[i], rep+1, s.perSecond, fmtDur(s.p50), fmtDur(s.p99), fmtDur(s.cpu))
		}
	}
	return r, nil
}

// startTierguard runs tierguard serve --dev on a free loopback port with
// the set's policy (embedded, or --policies), access log off, and waits
// until it is ready and its decision table serves.
func (b *bench) startTierguard(ctx context.Context, name string, set *policySet,
	tokenCache int) (*proc, error) {
	args := []string{"serve", "--dev", "--addr", "ADDR", "--log-level", "warn",
		"--token-cache-size", strconv.Itoa(tokenCache)}
	if !set.embedded {
		args = append(args, "--policies", set.dir)
	}
	p, err := b.ps.start(name, b.bins.tierguard, b.work, args...)
	if err != nil {
		return nil, err
	}
	if err := p.waitOK(ctx, "/health/ready", 2*time.Minute); err != nil {
		p.stop()
		return nil, err
	}

	// The first check a size row asks, or the single check.
	check := apiCheck("GET", "/api/videos/:id")
	if !set.embedded {
		check = syntheticProbe(len(set.tables.APIRoutes))
	}
	want, err := set.expected(ctx, decision.Subject{}, []decision.Check{check})
	if err != nil {
		return nil, err
	}
	probe, err := tierguardEndpoint(p, []decision.Check{check}, want, "")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for {
		share, err := tableShare(ctx, p.base, probe, 50)
		if err != nil {
			p.stop()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if share >= 0.5 {
			fmt.Fprintf(b.log, "%s ready at %s; decision table serving (%.0f%% of probes under 5 µs) after %s\n",
				name, p.base, 100*share, time.Since(start).Round(time.Millisecond))
			return p, nil
		}
		if p.tableOff = p.tableDisabled(); p.tableOff != "" {
			fmt.Fprintf(b.log, "%s ready at %s; DECISION TABLE DISABLED after %s: %s\n",
				name, p.base, time.Since(start).Round(time.Millisecond), p.tableOff)
			return p, nil
		}
		if time.Since(start) > 2*time.Minute {
			p.stop()
			return nil, fmt.Errorf("%s: the decision table did not serve within 2 minutes (%.0f%% of probes under 5 µs)",
				name, 100*share)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startOPA runs opa run --server on a free loopback port with the set's
// directory, request logs off (its levels are debug, info and error;
// tierguard runs at warn, so neither logs requests), no version check.
func (b *bench) startOPA(ctx context.Context, name string, set *policySet) (*proc, error) {
	p, err := b.ps.start(name, b.bins.opa, b.work, "run", "--server", "--addr", "ADDR",
		"--log-level", "error", "--skip-version-check", set.dir)
	if err != nil {
		return nil, err
	}
	if err := p.waitOK(ctx, "/health", 2*time.Minute); err != nil {
		p.stop()
		return nil, err
	}
	fmt.Fprintf(b.log, "%s ready at %s\n", name, p.base)
	return p, nil
}

// checkLogs fails when a tierguard disabled a decision table that was
// serving when its rows began: they would have measured something else
// than they say.
func checkLogs(ps ...*proc) error {
	for _, p := range ps {
		if reason := p.tableDisabled(); reason != "" && p.tableOff == "" {
			return fmt.Errorf("%s disabled its decision table during the run (%s); see %s", p.name, reason, p.log)
		}
	}
	return nil
}
