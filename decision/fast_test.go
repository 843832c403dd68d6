package decision

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func waitTable(t testing.TB, r *Revision) TableStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := r.TableStatus()
		if st.State != "building" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatal("the decision table was still building after 60s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The table must answer exactly what full evaluation answers, for every
// tier and every declared check.
func TestTableMatchesFullEvaluation(t *testing.T) {
	e := embeddedEngine(t)
	r := e.Current()
	if st := waitTable(t, r); st.State != "ready" {
		t.Fatalf("table state %+v, want ready", st)
	}
	subjects := map[string]Subject{
		"anonymous": {},
		"free":      {Authenticated: true, Subject: "f", Groups: []string{"tier-free"}},
		"plus":      {Authenticated: true, Subject: "p", Claims: map[string]any{"tier": "plus"}},
		"pro":       {Authenticated: true, Subject: "q", Groups: []string{"Everyone", "tier-pro"}},
		"odd claim": {Authenticated: true, Subject: "o", Claims: map[string]any{"tier": []any{"pro"}}},
	}
	checks := r.declaredChecks()
	if len(checks) < 30 {
		t.Fatalf("only %d declared checks", len(checks))
	}
	for name, s := range subjects {
		tier, err := r.Tier(context.Background(), s)
		if err != nil {
			t.Fatalf("%s: Tier: %v", name, err)
		}
		for _, c := range checks {
			full := r.Decide(context.Background(), Input{Subject: s, Check: c})
			fast, ok := r.Lookup(tier, s.Authenticated, c)
			if !ok {
				t.Fatalf("%s: Lookup(%q, %+v) missed", name, tier, c)
			}
			if diff := cmp.Diff(full, fast); diff != "" {
				t.Errorf("%s %+v: table differs from full evaluation (-full +table):\n%s", name, c, diff)
			}
		}
	}
	if _, ok := r.Lookup("plus", true, Check{Kind: KindFeature, Name: "8k"}); ok {
		t.Error("Lookup answered an undeclared feature; it must fall back to full evaluation")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	r := embeddedEngine(t).Current()
	waitTable(t, r)
	c := Check{Kind: KindAPI, Method: "GET", Template: "/api/treasure-map"}
	allocs := testing.AllocsPerRun(1000, func() {
		if d, ok := r.Lookup("plus", true, c); !ok || !d.Allow {
			t.Fatal("lookup failed")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %.1f times per call, want 0", allocs)
	}
}

func TestTableRefusesPoliciesItCannotCapture(t *testing.T) {
	base := func(extra string) string {
		return `package tierguard.authz
tier := "free"
decision := {"allow": true, "reason": "allowed", "required_tier": null, "tier": tier} if { ` + extra + ` }
decisions := [decision | some _ in input.checks]`
	}
	tests := []struct {
		name, rego, reason string
	}{
		{"reads scopes", base(`"admin" in input.subject.scopes`), "input.subject.scopes"},
		{"reads the profile", base(`input.profile.email`), "input.profile"},
		{"reads the clock", base(`time.now_ns() > 0`), "time.now_ns"},
		{"random", base(`rand.intn("x", 10) >= 0`), "rand.intn"},
		{"dynamic input ref", base(`k := "subject"; input[k].sub`), "input["},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := LoadFS(policyFS(tt.rego))
			if err != nil {
				t.Fatal(err)
			}
			e, err := NewEngine(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			st := waitTable(t, e.Current())
			if st.State != "disabled" || !strings.Contains(st.Reason, tt.reason) {
				t.Errorf("table %+v, want disabled naming %q", st, tt.reason)
			}
		})
	}

	// The tier rule itself may read any claim: that is what it is for.
	p, err := LoadFS(policyFS(`package tierguard.authz
tier := input.subject.claims.tier
decision := {"allow": true, "reason": "allowed", "required_tier": null, "tier": tier}
decisions := [decision | some _ in input.checks]`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if st := waitTable(t, e.Current()); st.State != "ready" {
		t.Errorf("a tier rule reading claims disabled the table: %+v", st)
	}
}

// A table that disagrees with full evaluation never serves.
func TestTableMismatchIsCaught(t *testing.T) {
	r := embeddedEngine(t).Current()
	waitTable(t, r)
	checks := r.declaredChecks()
	decisions := map[tableKey]Decision{}
	for k, v := range r.fast.table.Load().decisions {
		decisions[k] = v
	}
	k, _ := keyOf("free", true, Check{Kind: KindAPI, Method: "GET", Template: "/api/treasure-map"})
	d := decisions[k]
	d.Allow, d.Reason, d.RequiredTier = true, ReasonAllowed, ""
	decisions[k] = d
	if reason := r.verifyTable(context.Background(), decisions, checks); !strings.Contains(reason, "/api/treasure-map") {
		t.Errorf("verifyTable accepted a wrong entry (reason %q)", reason)
	}
}

func BenchmarkLookup(b *testing.B) {
	r := embeddedEngine(b).Current()
	waitTable(b, r)
	c := Check{Kind: KindAPI, Method: "GET", Template: "/api/treasure-map"}
	b.ReportAllocs()
	for b.Loop() {
		if d, ok := r.Lookup("plus", true, c); !ok || !d.Allow {
			b.Fatal("lookup failed")
		}
	}
}

// BenchmarkDecideFull is the reference for the table: a prepared OPA
// evaluation of the same check, with the table turned off.
func BenchmarkDecideFull(b *testing.B) {
	p, err := Embedded()
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(context.Background(), p, WithoutTable())
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Subject: plusSubject, Check: Check{Kind: KindAPI, Method: "GET", Template: "/api/treasure-map"}}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Decide(context.Background(), in); !d.Allow {
			b.Fatal("deny")
		}
	}
}

// A large route table is tabled too: checking it must not run into the
// evaluation deadline.
func TestTableForTenThousandRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10,000-route table")
	}
	e := syntheticEngine(t, 10000)
	r := e.Current()
	st := waitTable(t, r)
	if st.State != "ready" {
		t.Fatalf("table %+v, want ready", st)
	}
	c := Check{Kind: KindAPI, Method: "GET", Template: "/api/r5001/:id"}
	d, ok := r.Lookup("plus", true, c)
	full := r.Decide(context.Background(), Input{Subject: plusSubject, Check: c})
	if !ok || d != full {
		t.Errorf("Lookup = %+v %v, full evaluation = %+v", d, ok, full)
	}
}
