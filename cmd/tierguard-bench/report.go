package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

// report is one run's results, written as Markdown.
type report struct {
	o                     options
	started, finished     time.Time
	loadBefore, loadAfter string
	rowLoads              []float64
	inProcess             inProcess
	embedded              []row // single, batch of 10, batch of 100
	tokens                row
	routes                []row
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }

	p("\n## tierguard-bench, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: %s, %d CPUs (GOMAXPROCS %d), %s/%s, %s, OPA %s\n", cpuModel(), runtime.NumCPU(),
		runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), opaVersion())
	lo, hi := 0.0, 0.0
	if len(r.rowLoads) > 0 {
		lo, hi = slices.Min(r.rowLoads), slices.Max(r.rowLoads)
	}
	p("- load average (1, 5, 15 min): %s before, %s after, 1-min %.2f to %.2f as rows began;\n"+
		"  the load generator, both servers and anything else on the machine share these CPUs\n",
		r.loadBefore, r.loadAfter, lo, hi)
	p("- %d connections per server, each sending its next request when the last is answered;\n"+
		"  %d interleaved repetitions of %s per server after a %s warm-up; medians shown;\n"+
		"  every answer checked against full evaluation; took %s\n\n", r.o.conns, r.o.reps, r.o.duration,
		r.o.warmup, r.finished.Sub(r.started).Round(time.Second))

	p("### POST /authz/check against opa run --server\n\n")
	p("| row | tierguard decisions/s | p50 | p99 | OPA decisions/s | p50 | p99 |" +
		" tierguard/OPA decisions/s | p99 tierguard/OPA |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var notes []string
	for _, row := range append(slices.Clone(r.embedded), r.routes...) {
		tg, opa := row.median(0), row.median(1)
		name := row.name
		if row.note != "" {
			notes = append(notes, row.note)
			name += fmt.Sprintf(" (note %d)", len(notes))
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %.2f× | %.2f× |\n", name,
			thousands(tg.perSecond), fmtDur(tg.p50), fmtDur(tg.p99),
			thousands(opa.perSecond), fmtDur(opa.p50), fmtDur(opa.p99),
			row.ratio(0, 1, perSecond), row.ratio(0, 1, p99))
	}
	for i, n := range notes {
		p("\nNote %d: %s.\n", i+1, n)
	}
	p("\nRows: the embedded policy's GET /api/videos/42 (single), batches cycling through its 15 API\n" +
		"routes, then generated policies of N routes asked about one route near the middle of the table\n" +
		"(the servers of every size run at once, and each repetition goes through all of them).\n" +
		"OPA gets the input tierguard's engine gets, at /v1/data/tierguard/authz/decision, and batches at\n" +
		"/v1/data/tierguard/authz/decisions, the policy's own batch rule. A batch's decisions/s counts\n" +
		"requests × batch size. Ratios are medians of the per-repetition ratios.\n\n")

	p("### Server CPU per decision (user + system time of the server process / decisions)\n\n")
	p("| row | tierguard | OPA | OPA/tierguard |\n|---|--:|--:|--:|\n")
	for _, row := range append(slices.Clone(r.embedded), r.routes...) {
		p("| %s | %s | %s | %.2f× |\n", row.name, fmtDur(row.median(0).cpu), fmtDur(row.median(1).cpu),
			row.ratio(1, 0, cpu))
	}
	p("\nCPU time hardly depends on what else the machine runs, unlike decisions/s: on a shared\n" +
		"machine it is the steadier measure of what a decision costs each server.\n\n")

	p("### Tokens (tierguard only; OPA verifies no tokens)\n\n")
	p("| row | decisions/s | p50 | p99 | vs no token | CPU/decision |\n|---|--:|--:|--:|--:|--:|\n")
	for i, name := range r.tokens.servers {
		s := r.tokens.median(i)
		p("| %s | %s | %s | %s | %.2f× | %s |\n", name, thousands(s.perSecond), fmtDur(s.p50),
			fmtDur(s.p99), r.tokens.ratio(i, 1, perSecond), fmtDur(s.cpu))
	}
	p("\nSingle check GET /api/videos/42; the bearer token carries tier plus, from the dev\n" +
		"issuer (RS256).\n\n")

	ip := r.inProcess
	p("### In process (testing.Benchmark, GET /api/treasure-map for a plus subject)\n\n")
	p("| | ns/op | allocs/op | B/op |\n|---|--:|--:|--:|\n")
	p("| Revision.Lookup (decision table) | %.1f | %d | %d |\n", nsPerOp(ip.lookup), ip.lookup.AllocsPerOp(),
		ip.lookup.AllocedBytesPerOp())
	p("| Revision.Decide, WithoutTable (OPA prepared evaluation) | %.0f | %d | %d |\n", nsPerOp(ip.decide),
		ip.decide.AllocsPerOp(), ip.decide.AllocedBytesPerOp())
	p("\nTable against full evaluation: %d of %d answers identical (every declared check × anonymous and\n"+
		"each tier).\n", ip.compared-ip.mismatched, ip.compared)
	if ip.firstMismatch != "" {
		p("FIRST MISMATCH: %s\n", ip.firstMismatch)
	}
	table := fmt.Sprintf("its decision table served %s (median) later", fmtDur(medianDur(ip.tableBuilds)))
	if ip.tableOff != "" {
		table = fmt.Sprintf("its decision table was DISABLED (%s), so full evaluation served it", ip.tableOff)
	}
	p("\nSwaps of a %s-route policy (decision.LoadFS + Engine.Load; %d runs) while 2 goroutines\n"+
		"decide on the current revision: %s (median %s, of which decision.LoadFS %s); %s.\n"+
		"Decisions during the swaps: %s (%s/s; %s/s with no swap), the slowest %s (%s with no swap).\n\n",
		thousands(float64(ip.swapRoutes)), len(ip.swaps), fmtDurs(ip.swaps), fmtDur(medianDur(ip.swaps)),
		fmtDur(medianDur(ip.loads)), table, thousands(float64(ip.servedDuring)), thousands(ip.rateDuring),
		thousands(ip.rateBefore), fmtDur(ip.slowest), fmtDur(ip.slowBefore))

	p("### Targets (issue 6)\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range r.targets() {
		verdict := "MISS"
		if t.met {
			verdict = "PASS"
		}
		p("| %s | %s | %s |\n", t.name, t.measured, verdict)
	}
	p("\n")
}

type target struct {
	name, measured string
	met            bool
}

func (r *report) targets() []target {
	var out []target
	ip := r.inProcess
	speedup := nsPerOp(ip.decide) / nsPerOp(ip.lookup)
	out = append(out, target{
		name: "fast path ≥ 50× OPA's prepared evaluation, 0 allocs, identical answers",
		measured: fmt.Sprintf("%.0f×, %d allocs, %d/%d identical", speedup, ip.lookup.AllocsPerOp(),
			ip.compared-ip.mismatched, ip.compared),
		met: speedup >= 50 && ip.lookup.AllocsPerOp() == 0 && ip.mismatched == 0,
	})
	if row, ok := r.find("single check"); ok {
		tp, lat := row.ratio(0, 1, perSecond), row.ratio(0, 1, p99)
		out = append(out, target{
			name:     "single check ≥ 2.5× OPA's decisions/s, p99 ≤ ½ OPA's",
			measured: fmt.Sprintf("%.2f×, p99 %.2f×", tp, lat),
			met:      tp >= 2.5 && lat <= 0.5,
		})
	}
	if row, ok := r.find("batch of 100"); ok {
		tp := row.ratio(0, 1, perSecond)
		out = append(out, target{name: "batch of 100 ≥ 4× OPA's decisions/s",
			measured: fmt.Sprintf("%.2f×", tp), met: tp >= 4})
	}
	if len(r.tokens.samples) == 3 {
		c := r.tokens.ratio(0, 1, perSecond)
		out = append(out, target{name: "bearer token with the cache ≥ 90 % of no-token decisions/s",
			measured: fmt.Sprintf("%.0f %%", 100*c), met: c >= 0.9})
	}
	if len(r.routes) > 1 {
		var untabled []string
		for _, row := range r.routes {
			if row.note != "" {
				untabled = append(untabled, row.name)
			}
		}
		spread := r.routeSpread(false)
		measured := fmt.Sprintf("%.2f×", spread)
		if len(untabled) > 0 {
			measured += fmt.Sprintf("; no decision table at %s (%.2f× without)",
				strings.Join(untabled, ", "), r.routeSpread(true))
		}
		out = append(out, target{
			name: fmt.Sprintf("flat within 1.5× from %s to %s routes (tierguard, fastest/slowest size)",
				thousands(float64(slices.Min(r.o.routes))), thousands(float64(slices.Max(r.o.routes)))),
			measured: measured, met: spread <= 1.5,
		})
	}
	// Blocked decisions would wait out a swap; the slowest decision during
	// the swaps must stay under half of one.
	swap := medianDur(ip.swaps)
	out = append(out, target{
		name: fmt.Sprintf("%s-route policy compiled, prepared, swapped on the order of 200 ms (≤ 400 ms), "+
			"decisions in flight not blocked (slowest under half a swap)", thousands(float64(ip.swapRoutes))),
		measured: fmt.Sprintf("%s; %s decisions during swaps, slowest %s (%s with no swap)", fmtDur(swap),
			thousands(float64(ip.servedDuring)), fmtDur(ip.slowest), fmtDur(ip.slowBefore)),
		met: swap <= 400*time.Millisecond && ip.servedDuring > 0 && ip.slowest < swap/2,
	})
	return out
}

// routeSpread is the median, over repetitions, of tierguard's fastest
// size's decisions/s over its slowest size's in that repetition: all
// sizes ran back to back within one repetition. tabledOnly leaves out
// the sizes whose decision table did not serve.
func (r *report) routeSpread(tabledOnly bool) float64 {
	var spreads []float64
	for k := range r.routes[0].samples[0] {
		var rates []float64
		for _, row := range r.routes {
			if !tabledOnly || row.note == "" {
				rates = append(rates, row.samples[0][k].perSecond)
			}
		}
		if len(rates) == 0 {
			return 0
		}
		spreads = append(spreads, slices.Max(rates)/slices.Min(rates))
	}
	return median(spreads)
}

func (r *report) find(name string) (row, bool) {
	for _, row := range r.embedded {
		if row.name == name {
			return row, true
		}
	}
	return row{}, false
}

func perSecond(s sample) float64 { return s.perSecond }
func p99(s sample) float64       { return float64(s.p99) }

// median is the median, field by field, of server i's repetitions.
func (r row) median(i int) sample {
	ss := r.samples[i]
	return sample{
		perSecond: medianOf(ss, perSecond),
		p50:       time.Duration(medianOf(ss, func(s sample) float64 { return float64(s.p50) })),
		p99:       time.Duration(medianOf(ss, p99)),
		cpu:       time.Duration(medianOf(ss, cpu)),
	}
}

func cpu(s sample) float64 { return float64(s.cpu) }

// ratio is the median of per-repetition ratios of server i to server j:
// each pair ran back to back, so a load change on the machine touches
// both sides of a ratio alike.
func (r row) ratio(i, j int, f func(sample) float64) float64 {
	var rs []float64
	for k := range r.samples[i] {
		rs = append(rs, f(r.samples[i][k])/f(r.samples[j][k]))
	}
	return median(rs)
}

func medianOf(ss []sample, f func(sample) float64) float64 {
	vs := make([]float64, len(ss))
	for i, s := range ss {
		vs[i] = f(s)
	}
	return median(vs)
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

func medianDur(ds []time.Duration) time.Duration {
	vs := make([]float64, len(ds))
	for i, d := range ds {
		vs[i] = float64(d)
	}
	return time.Duration(median(vs))
}

// nsPerOp is exact: testing.BenchmarkResult.NsPerOp truncates to whole
// nanoseconds, and a lookup takes a few tens of them.
func nsPerOp(b testing.BenchmarkResult) float64 {
	if b.N == 0 {
		return 0
	}
	return float64(b.T.Nanoseconds()) / float64(b.N)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func fmtDurs(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmtDur(d)
	}
	return strings.Join(parts, ", ")
}

// thousands formats v rounded, with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func opaVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/open-policy-agent/opa" {
				return m.Version
			}
		}
	}
	return "(version unknown)"
}
