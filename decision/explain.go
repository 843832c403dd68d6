package decision

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Step is one rule that took part in a decision: where it is, and the
// head it produced. Explanations are for tooling (tierguard check
// --explain), never for the hot path: tracing costs far more than deciding.
type Step struct {
	Location string `json:"location"`
	Rule     string `json:"rule"`
}

func (s Step) String() string { return s.Location + ": " + s.Rule }

// Explain decides in as Decide does and also reports, in evaluation order,
// each rule whose body succeeded on the way.
func (r *Revision) Explain(ctx context.Context, in Input) (Decision, []Step, error) {
	input, err := inputValue(in.Subject, in.Profile, "check", checkValue(in.Check))
	if err != nil {
		return Decision{}, nil, err
	}

	tracer := topdown.NewBufferTracer()
	ctx, cancel := context.WithTimeout(ctx, r.engine.timeout)
	defer cancel()
	rs, err := r.single.Eval(ctx, rego.EvalParsedInput(input), rego.EvalQueryTracer(tracer))
	if err != nil {
		return Decision{}, nil, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{Reason: ReasonPolicyError, Revision: r.ID}, nil, nil
	}
	d, err := parseDecision(rs[0].Expressions[0].Value)
	if err != nil {
		return Decision{Reason: ReasonPolicyError, Revision: r.ID}, nil, err
	}
	d.Revision = r.ID
	return d, steps(*tracer), nil
}

// steps keeps the rules that exited successfully, once each.
func steps(events []*topdown.Event) []Step {
	var out []Step
	seen := map[string]bool{}
	for _, ev := range events {
		if ev.Op != topdown.ExitOp {
			continue
		}
		rule, ok := ev.Node.(*ast.Rule)
		if !ok || rule.Location == nil {
			continue
		}
		loc := fmt.Sprintf("%s:%d", rule.Location.File, rule.Location.Row)
		if seen[loc] {
			continue
		}
		seen[loc] = true
		head := strings.SplitN(string(rule.Location.Text), "\n", 2)[0]
		head = strings.TrimSuffix(strings.TrimSpace(head), "{")
		out = append(out, Step{Location: loc, Rule: strings.TrimSpace(head)})
	}
	return out
}
