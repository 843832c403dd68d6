package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing/fstest"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/decision/decisiontest"
	"github.com/tierguard/tierguard/policies"
)

// policySet is one policy as both servers load it, with the reference
// engine that computes every expected answer by full evaluation (table
// off), so neither server is checked against its own output.
type policySet struct {
	name string
	// dir is the policy tree on disk: OPA's argument, and tierguard's
	// --policies unless embedded is set (tierguard then uses its embedded
	// copy of the same files).
	dir      string
	embedded bool
	ref      *decision.Revision
	tables   decision.Tables
}

// embeddedSet writes the embedded policies/ tree, without its tests, to
// dir for OPA.
func embeddedSet(ctx context.Context, dir string) (*policySet, error) {
	if err := writeTree(dir, policies.FS); err != nil {
		return nil, err
	}
	p, err := decision.Embedded()
	if err != nil {
		return nil, err
	}
	return newSet(ctx, "embedded", dir, true, p)
}

// syntheticSet writes the real authz.rego with a generated route table of
// n API routes and n/10 pages, shaped like decision/bench_test.go's
// syntheticPolicy, and no test file (tierguard runs a --policies tree's
// tests at start).
func syntheticSet(ctx context.Context, dir string, n int) (*policySet, error) {
	fsys, err := syntheticFS(n)
	if err != nil {
		return nil, err
	}
	if err := writeTree(dir, fsys); err != nil {
		return nil, err
	}
	p, err := decision.LoadFS(fsys)
	if err != nil {
		return nil, err
	}
	return newSet(ctx, fmt.Sprintf("%d routes", n), dir, false, p)
}

func newSet(ctx context.Context, name, dir string, embedded bool,
	p *decision.Policy) (*policySet, error) {
	e, err := decision.NewEngine(ctx, p, decision.WithoutTable())
	if err != nil {
		return nil, err
	}
	rev := e.Current()
	return &policySet{name: name, dir: dir, embedded: embedded, ref: rev, tables: rev.Tables()}, nil
}

func syntheticFS(n int) (fstest.MapFS, error) { return decisiontest.SyntheticPolicy(n) }

func syntheticTemplate(i int) string { return decisiontest.Template(i) }

// syntheticProbe is the route a size row checks: near the middle of the
// table and always a free-tier route, so every size row asks the same
// kind of question (an anonymous caller, denied as unauthenticated).
func syntheticProbe(n int) decision.Check {
	i := n/2 - (n/2)%4 + 1
	return apiCheck("GET", syntheticTemplate(i))
}

// writeTree copies fsys to dir, leaving out *_test.rego: OPA's server
// does not run tests, and tierguard's embedded policy leaves them out of
// the decision path too.
func writeTree(dir string, fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		if !strings.HasSuffix(path, ".rego") && !strings.HasSuffix(path, ".json") {
			return nil
		}
		raw, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, raw, 0o644)
	})
}

// apiCheck is an API check as tierguard's engine gets it: the template,
// and a concrete path that resolves to it (each parameter becomes 42).
func apiCheck(method, template string) decision.Check {
	segs := strings.Split(template, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || s == "*" {
			segs[i] = "42"
		}
	}
	return decision.Check{Kind: decision.KindAPI, Method: method, Template: template,
		Path: strings.Join(segs, "/")}
}

// batchChecks cycles through the policy's API routes.
func batchChecks(t decision.Tables, n int) []decision.Check {
	out := make([]decision.Check, n)
	for i := range out {
		r := t.APIRoutes[i%len(t.APIRoutes)]
		out[i] = apiCheck(r.Method, r.Template)
	}
	return out
}

// expected is the reference engine's answer to checks for s. An answer
// that says the input itself is wrong (an unknown route, a policy error)
// means the bench built a bad input, so it is an error here.
func (p *policySet) expected(ctx context.Context, s decision.Subject,
	checks []decision.Check) ([]decision.Decision, error) {
	var out []decision.Decision
	if len(checks) == 1 {
		out = []decision.Decision{p.ref.Decide(ctx, decision.Input{Subject: s, Check: checks[0]})}
	} else {
		out = p.ref.DecideBatch(ctx, s, nil, checks)
	}
	for i, d := range out {
		switch d.Reason {
		case decision.ReasonPolicyError, decision.ReasonRouteUnknown:
			return nil, fmt.Errorf("%s: the reference answer to %s %s is %s", p.name,
				checks[i].Method, checks[i].Template, d.Reason)
		}
	}
	return out, nil
}
