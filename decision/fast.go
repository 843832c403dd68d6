package decision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The fast path. A tier policy's answer depends on the subject's tier,
// whether it is authenticated, and what is checked: a small space (tiers by
// declared checks). Once a revision is live, the engine asks OPA itself for
// every point of that space and keeps the answers in a table, so most
// decisions are a map lookup. The table is only built for a policy whose
// decision provably reads nothing else of the subject (the tier rule may
// read anything) and calls no non-deterministic built-in, and it is
// checked against full evaluation before it serves. Anything the table
// cannot answer goes to full evaluation.

const tierQuery = "data.tierguard.authz.tier"

// verifyChunk is how many checks one verifying evaluation carries.
const verifyChunk = 200

// tableKey identifies one tabled decision. Strings in a struct key make the
// lookup allocation-free.
type tableKey struct {
	tier          string
	authenticated bool
	kind, a, b    string
}

func keyOf(tier string, authenticated bool, c Check) (tableKey, bool) {
	k := tableKey{tier: tier, authenticated: authenticated, kind: c.Kind}
	switch c.Kind {
	case KindAPI:
		k.a, k.b = c.Method, c.Template
	case KindUI:
		k.a = c.Template
	case KindResource:
		k.a, k.b = c.Type, c.Action
	case KindFeature:
		k.a = c.Name
	default:
		return k, false
	}
	return k, true
}

type table struct {
	decisions map[tableKey]Decision
}

// TableStatus says whether a revision's decision table serves, and why not.
type TableStatus struct {
	State   string `json:"state"` // "building", "ready", "disabled"
	Entries int    `json:"entries,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

type fastPath struct {
	build  sync.Once
	table  atomic.Pointer[table]
	status atomic.Pointer[TableStatus]
	tier   rego.PreparedEvalQuery
	// anonymousTier is the tier rule's answer for a request without a
	// token, computed once per revision.
	anonymousTier string
}

// Lookup answers from the decision table for a subject whose tier the
// policy already computed (see Tier). It reports false when the table is
// not ready, is disabled, or does not hold the check: the caller then
// evaluates in full. Lookup does not allocate.
func (r *Revision) Lookup(tier string, authenticated bool, c Check) (Decision, bool) {
	t := r.fast.table.Load()
	if t == nil {
		return Decision{}, false
	}
	k, ok := keyOf(tier, authenticated, c)
	if !ok {
		return Decision{}, false
	}
	d, ok := t.decisions[k]
	return d, ok
}

// Tier evaluates the policy's tier rule for s. Claims become a tier in
// Rego, never in Go; callers cache the answer per token and revision.
func (r *Revision) Tier(ctx context.Context, s Subject) (string, error) {
	if !s.Authenticated && r.fast.anonymousTier != "" {
		return r.fast.anonymousTier, nil
	}
	input, err := inputValue(s, nil, "check", ast.ObjectTerm())
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, r.engine.timeout)
	defer cancel()
	rs, err := r.fast.tier.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return "", err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return "", errors.New("the tier is undefined")
	}
	tier, ok := rs[0].Expressions[0].Value.(string)
	if !ok {
		return "", fmt.Errorf("the tier is %T, not a string", rs[0].Expressions[0].Value)
	}
	return tier, nil
}

// TableStatus reports the state of this revision's decision table.
func (r *Revision) TableStatus() TableStatus {
	if st := r.fast.status.Load(); st != nil {
		return *st
	}
	return TableStatus{State: "building"}
}

func (r *Revision) setTableStatus(st TableStatus) { r.fast.status.Store(&st) }

// prepareFast prepares the tier query. It never fails a revision: without
// a usable tier rule the table is simply disabled.
func (r *Revision) prepareFast(ctx context.Context) {
	compiler := r.compiler
	if !definesRule(compiler, tierQuery) {
		r.setTableStatus(TableStatus{State: "disabled", Reason: "the policy has no tier rule"})
		return
	}
	if reason := untableable(compiler); reason != "" {
		r.setTableStatus(TableStatus{State: "disabled", Reason: reason})
		return
	}
	q, err := rego.New(rego.Query(tierQuery), rego.Compiler(compiler),
		rego.Store(r.store), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
	if err != nil {
		r.setTableStatus(TableStatus{State: "disabled", Reason: "the tier query did not prepare"})
		return
	}
	r.fast.tier = q
	if t, err := r.Tier(ctx, Subject{}); err == nil {
		r.fast.anonymousTier = t
	}
	r.setTableStatus(TableStatus{State: "building"})
}

// untableable explains why the policy's decision may depend on more than
// tier, authentication and check, or "" when it cannot. It follows every
// rule the decision rules depend on, except the tier rule's own subtree
// (the tier is an input of the table), and refuses any read of the input
// other than the check and subject.authenticated, and any call of a
// non-deterministic built-in (time, http.send, random) anywhere.
func untableable(c *ast.Compiler) string {
	tierRules := map[*ast.Rule]bool{}
	for _, r := range c.GetRulesExact(ast.MustParseRef(tierQuery)) {
		for ; r != nil; r = r.Else {
			tierRules[r] = true
		}
	}

	// The decision's own rules, up to (not into) the tier rule.
	decisionRules := reachable(c, []string{singleQuery, batchQuery}, tierRules)
	for _, r := range decisionRules {
		if reason := inspect(r, true); reason != "" {
			return reason
		}
	}
	// The tier rule's subtree may read the whole subject, but must still
	// be deterministic.
	for _, r := range reachable(c, []string{tierQuery}, nil) {
		if reason := inspect(r, false); reason != "" {
			return reason
		}
	}
	return ""
}

// reachable lists the rules the queries' rules depend on, transitively,
// not entering the rules in stop.
func reachable(c *ast.Compiler, queries []string, stop map[*ast.Rule]bool) []*ast.Rule {
	seen := map[*ast.Rule]bool{}
	var out []*ast.Rule
	var visit func(r *ast.Rule)
	visit = func(r *ast.Rule) {
		for ; r != nil; r = r.Else {
			if seen[r] || stop[r] {
				return
			}
			seen[r] = true
			out = append(out, r)
			for dep := range c.Graph.Dependencies(r) {
				if dr, ok := dep.(*ast.Rule); ok {
					visit(dr)
				}
			}
		}
	}
	for _, q := range queries {
		for _, r := range c.GetRulesExact(ast.MustParseRef(q)) {
			visit(r)
		}
	}
	return out
}

// inspect refuses a non-deterministic built-in and, when inputs is set,
// any read of the input the table's key does not hold.
func inspect(r *ast.Rule, inputs bool) string {
	var reason string
	nondeterministic := func(op string) {
		if b, ok := ast.BuiltinMap[op]; ok && b.Nondeterministic && reason == "" {
			reason = "the policy calls the non-deterministic built-in " + b.Name
		}
	}
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if e.IsCall() {
			nondeterministic(e.Operator().String())
		}
		return false
	})
	ast.WalkTerms(r, func(t *ast.Term) bool {
		if reason != "" {
			return true
		}
		switch v := t.Value.(type) {
		case ast.Call:
			nondeterministic(v[0].Value.String())
		case ast.Ref:
			if inputs && v.HasPrefix(ast.InputRootRef) && !tableableInput(v) {
				reason = "the decision reads " + v.String() + ", not only the tier and the check"
			}
		}
		return false
	})
	return reason
}

// tableableInput accepts refs to input.check, input.checks and
// input.subject.authenticated: what the table's key holds.
func tableableInput(ref ast.Ref) bool {
	if len(ref) < 2 {
		return false
	}
	key, ok := ref[1].Value.(ast.String)
	if !ok {
		return false
	}
	switch key {
	case "check", "checks":
		return true
	case "subject":
		if len(ref) < 3 {
			return false
		}
		field, ok := ref[2].Value.(ast.String)
		return ok && field == "authenticated"
	}
	return false
}

// buildTable asks OPA for every combination of tier, authentication and
// declared check, then checks the answers against full evaluation of
// subjects whose claims give each tier. Only a table that agrees serves.
func (r *Revision) buildTable(ctx context.Context) {
	r.fast.build.Do(func() { r.buildTableOnce(ctx) })
}

func (r *Revision) buildTableOnce(ctx context.Context) {
	if r.TableStatus().State != "building" {
		return
	}
	checks := r.declaredChecks()
	decisions := make(map[tableKey]Decision, len(checks)*(len(r.tables.Tiers)+1))

	type point struct {
		tier          string
		authenticated bool
	}
	points := []point{{r.fast.anonymousTier, false}}
	for _, t := range r.tables.Tiers {
		points = append(points, point{t, true})
	}
	for _, p := range points {
		if p.tier == "" {
			continue
		}
		ds, err := r.evalWithTier(ctx, p.tier, p.authenticated, checks)
		if err != nil {
			r.disableTable(ctx, "building the table failed: "+err.Error())
			return
		}
		for i, c := range checks {
			k, _ := keyOf(p.tier, p.authenticated, c)
			decisions[k] = ds[i]
		}
	}

	if reason := r.verifyTable(ctx, decisions, checks); reason != "" {
		r.disableTable(ctx, reason)
		return
	}
	r.fast.table.Store(&table{decisions: decisions})
	r.setTableStatus(TableStatus{State: "ready", Entries: len(decisions)})
	r.engine.logger.LogAttrs(ctx, slog.LevelInfo, "decision table ready",
		slog.String("revision", r.ID), slog.Int("entries", len(decisions)))
}

func (r *Revision) disableTable(ctx context.Context, reason string) {
	r.setTableStatus(TableStatus{State: "disabled", Reason: reason})
	r.engine.tableMismatches.Add(1)
	r.engine.logger.LogAttrs(ctx, slog.LevelWarn, "decision table disabled; full evaluation serves",
		slog.String("revision", r.ID), slog.String("reason", reason))
}

// verifyTable evaluates, without any override, a subject per tier built
// the way tokens carry a tier (the tier claim), and the anonymous subject,
// and compares every answer with the table.
func (r *Revision) verifyTable(ctx context.Context, decisions map[tableKey]Decision, checks []Check) string {
	subjects := []Subject{{}}
	for _, t := range r.tables.Tiers {
		subjects = append(subjects, Subject{Authenticated: true, Subject: "table-check@" + t,
			Claims: map[string]any{"tier": t}})
	}
	for _, s := range subjects {
		full := make([]Decision, 0, len(checks))
		// In chunks, so each evaluation stays well inside the deadline
		// however large the route table.
		for start := 0; start < len(checks); start += verifyChunk {
			end := min(start+verifyChunk, len(checks))
			full = append(full, r.DecideBatch(ctx, s, nil, checks[start:end])...)
		}
		for i, c := range checks {
			got := full[i]
			if got.Reason == ReasonPolicyError {
				return "full evaluation failed while checking the table"
			}
			k, _ := keyOf(got.Tier, s.Authenticated, c)
			want, ok := decisions[k]
			if !ok || want != got {
				return fmt.Sprintf("table and full evaluation disagree on %s %s%s for tier %q",
					c.Kind, c.Method, c.Template+c.Name+c.Type, got.Tier)
			}
		}
	}
	return ""
}

func (r *Revision) declaredChecks() []Check {
	t := r.tables
	checks := make([]Check, 0, len(t.APIRoutes)+len(t.UIRoutes)+len(t.Features))
	for _, a := range t.APIRoutes {
		checks = append(checks, Check{Kind: KindAPI, Method: a.Method, Template: a.Template})
	}
	for _, u := range t.UIRoutes {
		checks = append(checks, Check{Kind: KindUI, Template: u.Template})
	}
	for typ, actions := range t.Resources {
		for _, a := range actions {
			checks = append(checks, Check{Kind: KindResource, Type: typ, Action: a})
		}
	}
	for _, f := range t.Features {
		checks = append(checks, Check{Kind: KindFeature, Name: f})
	}
	return checks
}

// evalWithTier decides checks for a subject of the given tier, overriding
// the tier rule with OPA's own `with` so the policy's decision logic, not
// Go, produces every answer.
func (r *Revision) evalWithTier(ctx context.Context, tier string, authenticated bool,
	checks []Check) ([]Decision, error) {
	query := fmt.Sprintf("%s with %s as %s", batchQuery, tierQuery, ast.StringTerm(tier))
	terms := make([]*ast.Term, len(checks))
	for i, c := range checks {
		terms[i] = checkValue(c)
	}
	subject := ast.ObjectTerm(ast.Item(ast.StringTerm("authenticated"), ast.BooleanTerm(authenticated)))
	input := ast.NewObject(
		ast.Item(ast.StringTerm("subject"), subject),
		ast.Item(ast.StringTerm("checks"), ast.ArrayTerm(terms...)),
	)
	rs, err := rego.New(rego.Query(query), rego.Compiler(r.compiler), rego.Store(r.store),
		rego.ParsedInput(input), rego.StrictBuiltinErrors(true)).Eval(ctx)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, errors.New("undefined")
	}
	values, ok := rs[0].Expressions[0].Value.([]any)
	if !ok || len(values) != len(checks) {
		return nil, errors.New("malformed batch")
	}
	out := make([]Decision, len(values))
	for i, v := range values {
		d, err := parseDecision(v)
		if err != nil {
			return nil, err
		}
		d.Revision = r.ID
		out[i] = d
	}
	return out, nil
}
