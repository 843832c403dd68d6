package decision

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files from the current results")

func embeddedEngine(t testing.TB) *Engine {
	t.Helper()
	p, err := Embedded()
	if err != nil {
		t.Fatalf("Embedded() = %v", err)
	}
	e, err := NewEngine(context.Background(), p)
	if err != nil {
		t.Fatalf("NewEngine(embedded) = %v", err)
	}
	return e
}

type goldenCase struct {
	Name    string  `json:"name"`
	Subject subject `json:"subject"`
	Check   Check   `json:"check"`
}

// subject mirrors the decision input's JSON shape, for test files.
type subject struct {
	Authenticated bool           `json:"authenticated"`
	Iss           string         `json:"iss"`
	Sub           string         `json:"sub"`
	Groups        []string       `json:"groups"`
	Claims        map[string]any `json:"claims"`
}

func (s subject) toSubject() Subject {
	return Subject{Authenticated: s.Authenticated, Issuer: s.Iss, Subject: s.Sub, Groups: s.Groups, Claims: s.Claims}
}

// TestGoldenDecisions decides every case in testdata/decision/cases.json
// and compares with the reviewed answers in decisions.golden.json.
func TestGoldenDecisions(t *testing.T) {
	e := embeddedEngine(t)
	raw, err := os.ReadFile("../testdata/decision/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}

	got := map[string]Decision{}
	for _, c := range cases {
		d := e.Decide(context.Background(), Input{Subject: c.Subject.toSubject(), Check: c.Check})
		d.Revision = "" // the revision changes with every policy edit
		got[c.Name] = d
	}
	gotJSON, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}

	golden := filepath.Join("..", "testdata", "decision", "decisions.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(gotJSON, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./decision -update to create it)", err)
	}
	if diff := cmp.Diff(strings.TrimSpace(string(want)), string(gotJSON)); diff != "" {
		t.Errorf("decisions differ from %s (-want +got):\n%s", golden, diff)
	}
}

func TestStory(t *testing.T) {
	e := embeddedEngine(t)
	treasure := Check{Kind: KindAPI, Method: "GET", Template: "/api/treasure-map"}
	tiered := func(tier string) Subject {
		return Subject{Authenticated: true, Subject: tier + "@example.com", Claims: map[string]any{"tier": tier}}
	}
	tests := []struct {
		name    string
		subject Subject
		want    Decision
	}{
		{"anonymous", Subject{}, Decision{Reason: ReasonUnauthenticated, RequiredTier: "plus", Tier: "anonymous"}},
		{"free", tiered("free"), Decision{Reason: ReasonTierRequired, RequiredTier: "plus", Tier: "free"}},
		{"plus", tiered("plus"), Decision{Allow: true, Reason: ReasonAllowed, Tier: "plus"}},
		{"pro", tiered("pro"), Decision{Allow: true, Reason: ReasonAllowed, Tier: "pro"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Decide(context.Background(), Input{Subject: tt.subject, Check: treasure})
			if got.Revision != e.Current().ID || got.Revision == "" {
				t.Errorf("Revision = %q, want the current %q", got.Revision, e.Current().ID)
			}
			got.Revision = ""
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide(%s, GET /api/treasure-map) (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// A batch must answer exactly what single checks answer, in order.
func TestBatchMatchesSingles(t *testing.T) {
	e := embeddedEngine(t)
	r := e.Current()
	tables := r.Tables()
	var checks []Check
	for _, a := range tables.APIRoutes {
		checks = append(checks, Check{Kind: KindAPI, Method: a.Method, Template: a.Template})
	}
	for _, u := range tables.UIRoutes {
		checks = append(checks, Check{Kind: KindUI, Template: u.Template})
	}
	for _, f := range tables.Features {
		checks = append(checks, Check{Kind: KindFeature, Name: f})
	}
	checks = append(checks, Check{Kind: KindFeature, Name: "nope"})

	for _, tier := range []string{"", "free", "plus", "pro"} {
		s := Subject{}
		if tier != "" {
			s = Subject{Authenticated: true, Subject: "u", Claims: map[string]any{"tier": tier}}
		}
		batch := r.DecideBatch(context.Background(), s, nil, checks)
		if len(batch) != len(checks) {
			t.Fatalf("DecideBatch(%d checks) returned %d decisions", len(checks), len(batch))
		}
		for i, c := range checks {
			single := r.Decide(context.Background(), Input{Subject: s, Check: c})
			if diff := cmp.Diff(single, batch[i]); diff != "" {
				t.Errorf("tier %q, check %+v: batch differs from single (-single +batch):\n%s", tier, c, diff)
			}
		}
	}
}

func TestTablesOfTheDefaultPolicy(t *testing.T) {
	tables := embeddedEngine(t).Current().Tables()
	if got := len(tables.APIRoutes); got < 12 {
		t.Errorf("default policy declares %d API routes, want at least 12", got)
	}
	if got := len(tables.UIRoutes); got < 6 {
		t.Errorf("default policy declares %d UI routes, want at least 6", got)
	}
	if got := len(tables.Features); got < 5 {
		t.Errorf("default policy declares %d features, want at least 5", got)
	}
	if diff := cmp.Diff([]string{"anonymous", "free", "plus", "pro"}, tables.Tiers); diff != "" {
		t.Errorf("tiers (-want +got):\n%s", diff)
	}
	var page UIRoute
	for _, u := range tables.UIRoutes {
		if u.Template == "/protected-content" {
			page = u
		}
	}
	want := UIRoute{Template: "/protected-content", Tier: "plus", Requires: []string{"GET /api/treasure-map"}}
	if diff := cmp.Diff(want, page); diff != "" {
		t.Errorf("/protected-content (-want +got):\n%s", diff)
	}
}

// policyFS is a minimal tree around one decision module, for tests that
// need a policy to misbehave in a particular way.
func policyFS(rego string) fstest.MapFS {
	return fstest.MapFS{
		"tierguard/authz/authz.rego": {Data: []byte(rego)},
		"tierguard/data.json":        {Data: []byte(`{"tiers": ["anonymous", "free"]}`)},
	}
}

func TestPolicyFailuresDenyWithPolicyError(t *testing.T) {
	tests := []struct {
		name  string
		rego  string
		cause string
	}{
		{
			name:  "undefined",
			rego:  "package tierguard.authz\ndecision := {} if false\ndecisions := []",
			cause: CauseUndefined,
		},
		{
			name:  "allow is not a boolean",
			rego:  `package tierguard.authz` + "\n" + `decision := {"allow": "yes", "reason": "allowed", "required_tier": null, "tier": "free"}` + "\ndecisions := []",
			cause: CauseMalformed,
		},
		{
			name:  "allow with a deny reason",
			rego:  `package tierguard.authz` + "\n" + `decision := {"allow": true, "reason": "tier_required", "required_tier": null, "tier": "free"}` + "\ndecisions := []",
			cause: CauseMalformed,
		},
		{
			name:  "allow with a required tier",
			rego:  `package tierguard.authz` + "\n" + `decision := {"allow": true, "reason": "allowed", "required_tier": "pro", "tier": "free"}` + "\ndecisions := []",
			cause: CauseMalformed,
		},
		{
			name:  "not an object",
			rego:  "package tierguard.authz\ndecision := true\ndecisions := []",
			cause: CauseMalformed,
		},
		{
			name:  "built-in error",
			rego:  `package tierguard.authz` + "\n" + `decision := {"allow": to_number(input.check.kind) > 0}` + "\ndecisions := []",
			cause: CauseEvalError,
		},
		{
			name: "deadline",
			rego: "package tierguard.authz\n" +
				`decision := {"allow": true, "reason": "allowed", "required_tier": null, "tier": "free"} if count([x | some x in numbers.range(1, 100000000)]) > 0` +
				"\ndecisions := []",
			cause: CauseDeadline,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := LoadFS(policyFS(tt.rego))
			if err != nil {
				t.Fatalf("LoadFS: %v", err)
			}
			e, err := NewEngine(context.Background(), p, WithTimeout(50*time.Millisecond))
			if err != nil {
				t.Fatalf("NewEngine: %v", err)
			}
			got := e.Decide(context.Background(), Input{Check: Check{Kind: KindFeature, Name: "x"}})
			want := Decision{Reason: ReasonPolicyError, Revision: p.Revision}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if n := e.PolicyErrors()[tt.cause]; n != 1 {
				t.Errorf("PolicyErrors()[%q] = %d, want 1 (all: %v)", tt.cause, n, e.PolicyErrors())
			}
		})
	}
}

func TestBatchFailureDeniesEveryCheck(t *testing.T) {
	p, err := LoadFS(policyFS("package tierguard.authz\ndecision := {}\ndecisions := [1]"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	got := e.Current().DecideBatch(context.Background(), Subject{}, nil, []Check{{Kind: KindUI}, {Kind: KindUI}})
	for i, d := range got {
		if d.Allow || d.Reason != ReasonPolicyError {
			t.Errorf("decision %d = %+v, want a policy_error deny", i, d)
		}
	}
}

func TestBrokenPoliciesNeverLoad(t *testing.T) {
	tests := []struct {
		name string
		fsys fstest.MapFS
	}{
		{"syntax error", policyFS("package tierguard.authz\ndecision := {")},
		{"strict mode: unused variable", policyFS("package tierguard.authz\ndecision := 1 if { x := 1 }\ndecisions := []")},
		{"no decision rule", policyFS("package tierguard.authz\nallow := true")},
		{"routes of the wrong shape", fstest.MapFS{
			"tierguard/authz/authz.rego": {Data: []byte("package tierguard.authz\ndecision := 1\ndecisions := []")},
			"tierguard/data.json":        {Data: []byte(`{"tiers": ["anonymous"], "api_routes": {"GET": ["/api/x"]}}`)},
		}},
		{"template with a space", fstest.MapFS{
			"tierguard/authz/authz.rego": {Data: []byte("package tierguard.authz\ndecision := 1\ndecisions := []")},
			"tierguard/data.json":        {Data: []byte(`{"tiers": ["anonymous"], "api_routes": {"GET": {"/api/x y": {"tier": "anonymous"}}}}`)},
		}},
		{"no modules", fstest.MapFS{"tierguard/data.json": {Data: []byte(`{}`)}}},
	}
	e := embeddedEngine(t)
	before := e.Current()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := LoadFS(tt.fsys)
			if err == nil {
				_, err = e.Load(context.Background(), p)
			}
			if err == nil {
				t.Fatal("the broken policy loaded")
			}
			if e.Current() != before {
				t.Error("a broken policy replaced the running revision")
			}
		})
	}
}

func TestTestedLoadRefusesFailingTests(t *testing.T) {
	fsys := policyFS(`package tierguard.authz
decision := {"allow": false, "reason": "tier_required", "required_tier": "free", "tier": "anonymous"}
decisions := []`)
	fsys["tierguard/authz/authz_test.rego"] = &fstest.MapFile{Data: []byte(`package tierguard.authz_test
import data.tierguard.authz
test_allows if authz.decision.allow`)}
	p, err := LoadFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Test(context.Background())
	var pe *PolicyError
	if !errorsAs(err, &pe) || pe.Stage != "test" || !strings.Contains(err.Error(), "test_allows") {
		t.Errorf("Test() = %v, want a test-stage PolicyError naming test_allows", err)
	}
}

func TestRevisionIsAContentHash(t *testing.T) {
	a, err := LoadFS(policyFS("package tierguard.authz\ndecision := 1\ndecisions := []"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadFS(policyFS("package tierguard.authz\ndecision := 1\ndecisions := []"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadFS(policyFS("package tierguard.authz\ndecision := 2\ndecisions := []"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision != b.Revision {
		t.Errorf("same content, revisions %q and %q", a.Revision, b.Revision)
	}
	if a.Revision == c.Revision {
		t.Errorf("different content, same revision %q", a.Revision)
	}
}

// Swapping revisions under load never yields a decision from neither.
func TestSwapUnderLoad(t *testing.T) {
	e := embeddedEngine(t)
	first := e.Current()
	p2, err := LoadFS(policyFS(`package tierguard.authz
decision := {"allow": false, "reason": "tier_required", "required_tier": "free", "tier": "anonymous"}
decisions := []`))
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.Prepare(context.Background(), p2)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := e.Decide(context.Background(), Input{Check: Check{Kind: KindFeature, Name: "hd"}})
				if d.Reason == ReasonPolicyError || (d.Revision != first.ID && d.Revision != second.ID) {
					t.Errorf("decision during swap: %+v", d)
					return
				}
			}
		}()
	}
	for i := range 50 {
		if i%2 == 0 {
			e.Swap(second)
		} else {
			e.Swap(first)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
}

func TestExplainNamesTheDecidingRules(t *testing.T) {
	e := embeddedEngine(t)
	in := Input{
		Subject: Subject{Authenticated: true, Subject: "u", Groups: []string{"tier-plus"}},
		Check:   Check{Kind: KindUI, Template: "/admin"},
	}
	d, steps, err := e.Current().Explain(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow || d.Reason != ReasonTierRequired || d.RequiredTier != "pro" {
		t.Errorf("Explain decision = %+v, want tier_required needing pro", d)
	}
	var text []string
	for _, s := range steps {
		text = append(text, s.String())
	}
	joined := strings.Join(text, "\n")
	for _, want := range []string{"decision := _decide(input.check)", "_ui_tier(template)", "_claimed_tiers contains _tier_value(suffix)"} {
		if !strings.Contains(joined, want) {
			t.Errorf("explanation lacks %q:\n%s", want, joined)
		}
	}
}
