package decision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// The rules the engine asks. decision answers input.check; decisions
// answers input.checks in order, so a batch is a single evaluation.
const (
	singleQuery = "data.tierguard.authz.decision"
	batchQuery  = "data.tierguard.authz.decisions"
)

// DefaultTimeout bounds one evaluation. A tier policy answers in
// microseconds; anything near this is a policy gone wrong.
const DefaultTimeout = 250 * time.Millisecond

// Causes of a policy_error, as counted by PolicyErrors.
const (
	CauseEvalError = "eval_error"
	CauseUndefined = "undefined"
	CauseMalformed = "malformed"
	CauseDeadline  = "deadline"
	CauseInput     = "input"
)

// Option adjusts an Engine.
type Option func(*Engine)

// WithLogger sets where policy errors are logged. The default discards.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.logger = l } }

// WithoutTable turns the decision table off: every decision is a full
// evaluation. For benchmarks and for ruling the table out when debugging.
func WithoutTable() Option { return func(e *Engine) { e.noTable = true } }

// WithTimeout bounds each evaluation; see DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(e *Engine) { e.timeout = d } }

// Engine evaluates checks against the current policy revision. Swapping
// in a new revision is atomic: an evaluation in flight finishes on the
// revision it started with. Engine is safe for concurrent use.
type Engine struct {
	current atomic.Pointer[Revision]
	logger  *slog.Logger
	timeout time.Duration

	errs            [5]atomic.Uint64 // indexed like causes
	tableMismatches atomic.Uint64
	updates         updates
	noTable         bool
}

var causes = [...]string{CauseEvalError, CauseUndefined, CauseMalformed, CauseDeadline, CauseInput}

// NewEngine prepares p and makes it the current revision.
func NewEngine(ctx context.Context, p *Policy, opts ...Option) (*Engine, error) {
	e := &Engine{logger: slog.New(slog.DiscardHandler), timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(e)
	}
	r, err := e.Prepare(ctx, p)
	if err != nil {
		return nil, err
	}
	e.Swap(r)
	e.updates.status = UpdateStatus{Revision: r.ID, Source: "initial", LoadedAt: time.Now().UTC()}
	return e, nil
}

// Revision is one prepared policy revision. Queries are prepared once
// here and evaluated many times.
type Revision struct {
	// ID names the revision: clients see it in Tierguard-Revision.
	ID string

	engine   *Engine
	policy   *Policy
	tables   Tables
	compiler *ast.Compiler
	store    storage.Store
	single   rego.PreparedEvalQuery
	batch    rego.PreparedEvalQuery
	fast     fastPath
}

// Prepare compiles p in strict mode and prepares its queries without
// making it current. A policy that fails here never serves.
func (e *Engine) Prepare(ctx context.Context, p *Policy) (*Revision, error) {
	tables, err := tablesFrom(p.data)
	if err != nil {
		return nil, &PolicyError{Stage: "load", Err: err}
	}
	compiler, err := p.compile()
	if err != nil {
		return nil, err
	}
	if !definesRule(compiler, singleQuery) || !definesRule(compiler, batchQuery) {
		err := fmt.Errorf("the policy defines no %s and %s rules", singleQuery, batchQuery)
		return nil, &PolicyError{Stage: "compile", Err: err}
	}

	// AST values on read spare OPA converting the route table from Go
	// values on every evaluation, which would make cost grow with its size.
	store := inmem.NewFromObjectWithOpts(p.data, inmem.OptReturnASTValuesOnRead(true))
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.Query(query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StrictBuiltinErrors(true),
		).PrepareForEval(ctx)
	}
	single, err := prepare(singleQuery)
	if err != nil {
		return nil, &PolicyError{Stage: "prepare", Err: err}
	}
	batch, err := prepare(batchQuery)
	if err != nil {
		return nil, &PolicyError{Stage: "prepare", Err: err}
	}
	r := &Revision{ID: p.Revision, engine: e, policy: p, tables: tables, compiler: compiler,
		store: store, single: single, batch: batch}
	if e.noTable {
		r.setTableStatus(TableStatus{State: "disabled", Reason: "turned off"})
	} else {
		r.prepareFast(ctx)
	}
	return r, nil
}

func definesRule(c *ast.Compiler, query string) bool {
	ref := ast.MustParseRef(query)
	return len(c.GetRulesExact(ref)) > 0
}

// Swap makes r the current revision, and starts building its decision
// table in the background: full evaluation serves until the table is
// ready and checked.
func (e *Engine) Swap(r *Revision) {
	e.current.Store(r)
	if r.TableStatus().State == "building" {
		go r.buildTable(context.Background())
	}
}

// TableMismatches counts decision tables disabled because building or
// checking them failed.
func (e *Engine) TableMismatches() uint64 { return e.tableMismatches.Load() }

// Load prepares p and, only if that succeeds, makes it current.
func (e *Engine) Load(ctx context.Context, p *Policy) (*Revision, error) {
	r, err := e.Prepare(ctx, p)
	if err != nil {
		return nil, err
	}
	e.Swap(r)
	return r, nil
}

// Current returns the revision serving now. Callers that make several
// decisions for one request should hold on to it, so all of them come from
// one revision.
func (e *Engine) Current() *Revision { return e.current.Load() }

// Decide evaluates one check on the current revision.
func (e *Engine) Decide(ctx context.Context, in Input) Decision {
	return e.Current().Decide(ctx, in)
}

// PolicyErrors reports how many evaluations ended in policy_error, by cause.
func (e *Engine) PolicyErrors() map[string]uint64 {
	out := make(map[string]uint64, len(causes))
	for i, c := range causes {
		out[c] = e.errs[i].Load()
	}
	return out
}

// Tables returns what this revision declares.
func (r *Revision) Tables() Tables { return r.tables }

// Policy returns the policy this revision was prepared from.
func (r *Revision) Policy() *Policy { return r.policy }

// Decide evaluates one check. It never fails: whatever goes wrong is a
// deny with reason policy_error, counted and logged.
func (r *Revision) Decide(ctx context.Context, in Input) Decision {
	input, err := inputValue(in.Subject, in.Profile, "check", checkValue(in.Check))
	if err != nil {
		return r.failed(ctx, CauseInput, err)
	}

	ctx, cancel := context.WithTimeout(ctx, r.engine.timeout)
	defer cancel()
	rs, err := r.single.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return r.failed(ctx, evalCause(ctx), err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return r.failed(ctx, CauseUndefined, errors.New("the decision is undefined"))
	}
	d, err := parseDecision(rs[0].Expressions[0].Value)
	if err != nil {
		return r.failed(ctx, CauseMalformed, err)
	}
	d.Revision = r.ID
	return d
}

// DecideBatch evaluates checks for one subject in a single evaluation and
// returns one decision per check, in order. If the batch as a whole fails,
// every check is denied with policy_error.
func (r *Revision) DecideBatch(ctx context.Context, s Subject, profile map[string]any,
	checks []Check) []Decision {
	out := make([]Decision, len(checks))
	fail := func(cause string, err error) []Decision {
		d := r.failed(ctx, cause, err)
		for i := range out {
			out[i] = d
		}
		return out
	}
	if len(checks) == 0 {
		return out
	}

	terms := make([]*ast.Term, len(checks))
	for i, c := range checks {
		terms[i] = checkValue(c)
	}
	input, err := inputValue(s, profile, "checks", ast.ArrayTerm(terms...))
	if err != nil {
		return fail(CauseInput, err)
	}

	ctx, cancel := context.WithTimeout(ctx, r.engine.timeout)
	defer cancel()
	rs, err := r.batch.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return fail(evalCause(ctx), err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return fail(CauseUndefined, errors.New("the batch decision is undefined"))
	}
	values, ok := rs[0].Expressions[0].Value.([]any)
	if !ok || len(values) != len(checks) {
		got := rs[0].Expressions[0].Value
		return fail(CauseMalformed, fmt.Errorf("want %d decisions, got %T", len(checks), got))
	}
	for i, v := range values {
		d, err := parseDecision(v)
		if err != nil {
			out[i] = r.failed(ctx, CauseMalformed, err)
			continue
		}
		d.Revision = r.ID
		out[i] = d
	}
	return out
}

func evalCause(ctx context.Context) string {
	if ctx.Err() != nil {
		return CauseDeadline
	}
	return CauseEvalError
}

// failed is the one place a policy failure becomes a decision: a deny,
// counted and logged once.
func (r *Revision) failed(ctx context.Context, cause string, err error) Decision {
	for i, c := range causes {
		if c == cause {
			r.engine.errs[i].Add(1)
		}
	}
	r.engine.logger.LogAttrs(ctx, slog.LevelError, "policy evaluation failed",
		slog.String("cause", cause), slog.String("revision", r.ID), slog.Any("error", err))
	return Decision{Allow: false, Reason: ReasonPolicyError, Revision: r.ID}
}

// parseDecision accepts only the contract's shape. Anything else, including
// an allow that carries a deny's fields, is malformed and so a deny.
func parseDecision(v any) (Decision, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("decision is %T, not an object", v)
	}
	allow, ok := m["allow"].(bool)
	if !ok {
		return Decision{}, errors.New("decision.allow is not a boolean")
	}
	reason, ok := m["reason"].(string)
	if !ok || reason == "" {
		return Decision{}, errors.New("decision.reason is not a non-empty string")
	}
	tier, ok := m["tier"].(string)
	if !ok {
		return Decision{}, errors.New("decision.tier is not a string")
	}
	var required string
	switch rt := m["required_tier"].(type) {
	case nil:
	case string:
		required = rt
	default:
		return Decision{}, errors.New("decision.required_tier is neither a string nor null")
	}
	if allow != (reason == ReasonAllowed) || (allow && required != "") {
		return Decision{}, errors.New("decision.allow disagrees with its reason or required_tier")
	}
	return Decision{Allow: allow, Reason: reason, RequiredTier: required, Tier: tier}, nil
}
