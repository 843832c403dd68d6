package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tierguard/tierguard/decision"
)

// inProcess is what the bench measures inside its own process, without
// HTTP: the decision table against OPA's prepared evaluation, and the swap
// of a large policy while decisions are in flight.
type inProcess struct {
	lookup, decide       testing.BenchmarkResult
	compared, mismatched int
	firstMismatch        string

	swapRoutes   int
	swaps        []time.Duration // decision.LoadFS + Engine.Load
	loads        []time.Duration // decision.LoadFS alone
	tableBuilds  []time.Duration // from the swap to a serving table
	tableOff     string          // why the swapped-in table did not serve, if it did not
	servedDuring int64           // decisions completed while a swap ran
	slowest      time.Duration   // the slowest of them
	rateBefore   float64         // decisions/s of the same deciders with no swap
	slowBefore   time.Duration   // the slowest decision with no swap
	rateDuring   float64
}

var plusSubject = decision.Subject{
	Authenticated: true,
	Issuer:        "https://example.okta.com/oauth2/default",
	Subject:       "alex@example.com",
	Groups:        []string{"Everyone", "tier-plus"},
	Claims:        map[string]any{"tier": "plus", "uid": "00u1a2b3c4d5e6f7"},
}

var setBenchtime sync.Once

// benchmark runs f with testing.Benchmark for about d.
func benchmark(d time.Duration, f func(b *testing.B)) testing.BenchmarkResult {
	setBenchtime.Do(func() {
		testing.Init()
		_ = flag.Set("test.benchtime", d.String())
	})
	return testing.Benchmark(f)
}

func measureInProcess(ctx context.Context, o options) (inProcess, error) {
	var r inProcess
	p, err := decision.Embedded()
	if err != nil {
		return r, err
	}
	fast, err := decision.NewEngine(ctx, p)
	if err != nil {
		return r, err
	}
	full, err := decision.NewEngine(ctx, p, decision.WithoutTable())
	if err != nil {
		return r, err
	}
	if _, err := waitForTable(ctx, fast.Current()); err != nil {
		return r, err
	}
	if st := fast.Current().TableStatus(); st.State != "ready" {
		return r, fmt.Errorf("the embedded policy's decision table is %s: %s", st.State, st.Reason)
	}
	if err := r.compareAll(ctx, fast.Current(), full.Current()); err != nil {
		return r, err
	}
	if err := r.benchLookup(ctx, fast.Current(), full.Current(), o.benchtime); err != nil {
		return r, err
	}

	r.swapRoutes = slices.Max(o.routes)
	return r, r.measureSwap(ctx, fast, p, o.reps)
}

// compareAll compares the table with full evaluation for every declared
// check, for the anonymous subject and a subject of each tier.
func (r *inProcess) compareAll(ctx context.Context, table, full *decision.Revision) error {
	t := table.Tables()
	var checks []decision.Check
	for _, a := range t.APIRoutes {
		checks = append(checks, decision.Check{Kind: decision.KindAPI, Method: a.Method, Template: a.Template})
	}
	for _, u := range t.UIRoutes {
		checks = append(checks, decision.Check{Kind: decision.KindUI, Template: u.Template})
	}
	for typ, actions := range t.Resources {
		for _, a := range actions {
			checks = append(checks, decision.Check{Kind: decision.KindResource, Type: typ, Action: a})
		}
	}
	for _, f := range t.Features {
		checks = append(checks, decision.Check{Kind: decision.KindFeature, Name: f})
	}
	subjects := []decision.Subject{{}}
	for _, tier := range t.Tiers {
		subjects = append(subjects, decision.Subject{Authenticated: true, Subject: "bench@" + tier,
			Claims: map[string]any{"tier": tier}})
	}
	for _, s := range subjects {
		tier, err := table.Tier(ctx, s)
		if err != nil {
			return err
		}
		for _, c := range checks {
			r.compared++
			got, ok := table.Lookup(tier, s.Authenticated, c)
			want := full.Decide(ctx, decision.Input{Subject: s, Check: c})
			if !ok || got != want {
				r.mismatched++
				if r.firstMismatch == "" {
					r.firstMismatch = fmt.Sprintf("%+v for tier %s: table %+v (held: %t), full %+v",
						c, tier, got, ok, want)
				}
			}
		}
	}
	return nil
}

// benchLookup times one table lookup against one prepared evaluation of
// the same check for the same subject.
func (r *inProcess) benchLookup(ctx context.Context, table, full *decision.Revision,
	d time.Duration) error {
	tier, err := table.Tier(ctx, plusSubject)
	if err != nil {
		return err
	}
	check := decision.Check{Kind: decision.KindAPI, Method: "GET", Template: "/api/treasure-map"}
	in := decision.Input{Subject: plusSubject, Check: check}
	if d, ok := table.Lookup(tier, true, check); !ok || !d.Allow {
		return fmt.Errorf("the table's answer for a plus subject on %s is %+v (held: %t)", check.Template, d, ok)
	}
	var misses atomic.Int64
	r.lookup = benchmark(d, func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d, ok := table.Lookup(tier, true, check); !ok || !d.Allow {
				misses.Add(1)
			}
		}
	})
	r.decide = benchmark(d, func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := full.Decide(ctx, in); !d.Allow {
				misses.Add(1)
			}
		}
	})
	if n := misses.Load(); n > 0 {
		return fmt.Errorf("%d wrong answers while benchmarking the table and full evaluation", n)
	}
	if r.lookup.N == 0 || r.decide.N == 0 {
		return fmt.Errorf("an in-process benchmark failed")
	}
	return nil
}

// measureSwap loads a policy of r.swapRoutes routes into e reps times
// while two goroutines keep deciding on whatever revision is current, as
// the server's handlers do, and times decision.LoadFS plus Engine.Load.
// Between swaps the embedded policy goes back in, unmeasured.
func (r *inProcess) measureSwap(ctx context.Context, e *decision.Engine,
	embedded *decision.Policy, reps int) error {
	fsys, err := syntheticFS(r.swapRoutes)
	if err != nil {
		return err
	}
	checks := []decision.Check{
		{Kind: decision.KindAPI, Method: "GET", Template: "/api/videos/:id"},
		syntheticProbe(r.swapRoutes),
	}

	var (
		during  atomic.Bool
		calm    atomic.Bool  // measuring the baseline, with no swap
		served  atomic.Int64 // while during
		total   atomic.Int64
		slowest atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				rev := e.Current()
				c := checks[i%len(checks)]
				tier, err := rev.Tier(ctx, decision.Subject{})
				_, ok := rev.Lookup(tier, false, c)
				if err != nil || !ok {
					rev.Decide(ctx, decision.Input{Check: c})
				}
				total.Add(1)
				if during.Load() || calm.Load() {
					served.Add(1)
					el := int64(time.Since(start))
					for cur := slowest.Load(); el > cur && !slowest.CompareAndSwap(cur, el); cur = slowest.Load() {
					}
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	before := total.Load()
	calm.Store(true)
	time.Sleep(time.Second)
	calm.Store(false)
	r.rateBefore = float64(total.Load() - before)
	r.slowBefore = time.Duration(slowest.Swap(0))
	served.Store(0)

	var swapped time.Duration
	for range reps {
		if err := ctx.Err(); err != nil {
			return err
		}
		during.Store(true)
		start := time.Now()
		p, err := decision.LoadFS(fsys)
		loaded := time.Since(start)
		var rev *decision.Revision
		if err == nil {
			rev, err = e.Load(ctx, p)
		}
		took := time.Since(start)
		during.Store(false)
		if err != nil {
			return fmt.Errorf("swapping in %d routes: %w", r.swapRoutes, err)
		}
		r.swaps = append(r.swaps, took)
		r.loads = append(r.loads, loaded)
		swapped += took

		built, err := waitForTable(ctx, rev)
		if err != nil {
			return err
		}
		if st := rev.TableStatus(); st.State == "ready" {
			r.tableBuilds = append(r.tableBuilds, built)
		} else {
			r.tableOff = st.Reason
		}

		back, err := e.Load(ctx, embedded)
		if err != nil {
			return err
		}
		if _, err := waitForTable(ctx, back); err != nil {
			return err
		}
	}
	r.servedDuring = served.Load()
	r.slowest = time.Duration(slowest.Load())
	r.rateDuring = float64(r.servedDuring) / swapped.Seconds()
	return nil
}

// waitForTable waits until rev's decision table is built, and says how
// long that took from now. The caller looks at the state: built may also
// mean disabled.
func waitForTable(ctx context.Context, rev *decision.Revision) (time.Duration, error) {
	start := time.Now()
	for {
		if rev.TableStatus().State != "building" {
			return time.Since(start), nil
		}
		if time.Since(start) > 2*time.Minute {
			return 0, fmt.Errorf("revision %s: decision table not ready after 2 minutes", rev.ID)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
