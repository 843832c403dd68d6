package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/tierguard/tierguard/decision"
)

// endpoint is one server asked one fixed question, as vegeta sends it,
// with the check every answer must pass.
type endpoint struct {
	server string // names the server in errors
	target vegeta.Target
	perReq int // decisions per request
	check  func(body []byte) error
	pid    int // the server's process, for its CPU time
}

// tierguardEndpoint asks POST /authz/check as a client does: concrete
// paths, which tierguard resolves to templates itself. An empty token is
// the anonymous caller.
func tierguardEndpoint(p *proc, checks []decision.Check, want []decision.Decision,
	token string) (endpoint, error) {
	type wireCheck struct {
		Kind   string `json:"kind"`
		Method string `json:"method"`
		Path   string `json:"path"`
	}
	wire := make([]wireCheck, len(checks))
	for i, c := range checks {
		wire[i] = wireCheck{Kind: c.Kind, Method: c.Method, Path: c.Path}
	}
	var body []byte
	var err error
	if len(checks) == 1 {
		body, err = json.Marshal(wire[0])
	} else {
		body, err = json.Marshal(map[string]any{"checks": wire})
	}
	if err != nil {
		return endpoint{}, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return endpoint{
		server: p.name,
		pid:    p.cmd.Process.Pid,
		target: vegeta.Target{Method: http.MethodPost, URL: p.base + "/authz/check", Body: body, Header: h},
		perReq: len(checks),
		check:  checker(want, len(checks) > 1, false),
	}, nil
}

// opaEndpoint asks OPA's Data API for the rule tierguard's engine
// evaluates, with the very input the engine builds: the anonymous subject
// and the resolved check. A batch asks data.tierguard.authz.decisions,
// the policy's own batch rule (the decision mapped over input.checks), so
// no bench-only wrapper module is needed.
func opaEndpoint(p *proc, checks []decision.Check, want []decision.Decision) (endpoint, error) {
	subject := map[string]any{"authenticated": false}
	var path string
	var input map[string]any
	if len(checks) == 1 {
		path = "/v1/data/tierguard/authz/decision"
		input = map[string]any{"subject": subject, "check": checks[0]}
	} else {
		path = "/v1/data/tierguard/authz/decisions"
		input = map[string]any{"subject": subject, "checks": checks}
	}
	body, err := json.Marshal(map[string]any{"input": input})
	if err != nil {
		return endpoint{}, err
	}
	return endpoint{
		server: p.name,
		pid:    p.cmd.Process.Pid,
		target: vegeta.Target{Method: http.MethodPost, URL: p.base + path, Body: body,
			Header: http.Header{"Content-Type": {"application/json"}}},
		perReq: len(checks),
		check:  checker(want, len(checks) > 1, true),
	}, nil
}

// wireDecision is the part of an answer both servers share; OPA's also
// carries the tier.
type wireDecision struct {
	Allow        *bool   `json:"allow"`
	Reason       string  `json:"reason"`
	RequiredTier *string `json:"required_tier"`
	Tier         *string `json:"tier"`
}

func (w wireDecision) diff(want decision.Decision, withTier bool) string {
	required := ""
	if w.RequiredTier != nil {
		required = *w.RequiredTier
	}
	tierOK := !withTier || (w.Tier != nil && *w.Tier == want.Tier)
	if w.Allow == nil || *w.Allow != want.Allow || w.Reason != want.Reason ||
		required != want.RequiredTier || !tierOK {
		got, _ := json.Marshal(w)
		return fmt.Sprintf("got %s, want allow=%t reason=%s required_tier=%q tier=%q",
			got, want.Allow, want.Reason, want.RequiredTier, want.Tier)
	}
	return ""
}

// checker compares an answer's decisions, in order, with want.
func checker(want []decision.Decision, batch, opa bool) func([]byte) error {
	return func(body []byte) error {
		var got []wireDecision
		var err error
		switch {
		case opa && batch:
			var r struct {
				Result []wireDecision `json:"result"`
			}
			err = json.Unmarshal(body, &r)
			got = r.Result
		case opa:
			var r struct {
				Result *wireDecision `json:"result"`
			}
			if err = json.Unmarshal(body, &r); err == nil && r.Result != nil {
				got = []wireDecision{*r.Result}
			}
		case batch:
			var r struct {
				Decisions []wireDecision `json:"decisions"`
			}
			err = json.Unmarshal(body, &r)
			got = r.Decisions
		default:
			var w wireDecision
			err = json.Unmarshal(body, &w)
			got = []wireDecision{w}
		}
		if err != nil {
			return fmt.Errorf("unreadable answer %.200q: %w", body, err)
		}
		if len(got) != len(want) {
			return fmt.Errorf("%d decisions in %.200q, want %d", len(got), body, len(want))
		}
		for i := range want {
			if msg := got[i].diff(want[i], opa); msg != "" {
				return fmt.Errorf("decision %d: %s", i, msg)
			}
		}
		return nil
	}
}

// sample is one measured repetition.
type sample struct {
	requests  int
	perSecond float64 // decisions: requests times decisions per request
	p50, p99  time.Duration
	// cpu is the server process's CPU time per decision (user and
	// system), 0 where the bench cannot read it. Unlike decisions/s it
	// hardly depends on what else the machine runs.
	cpu time.Duration
}

// drive sends e's request from conns workers over conns keep-alive
// connections, each sending its next request as soon as the last is
// answered (vegeta's -rate=0 -max-workers=conns), for d. Every answer is
// checked; a single wrong one fails the repetition, with the first
// wrong answer in the error.
func drive(ctx context.Context, e endpoint, d time.Duration, conns int) (sample, error) {
	cpu0, cpuOK := processCPU(e.pid)
	n := uint64(conns)
	atk := vegeta.NewAttacker(vegeta.Workers(n), vegeta.MaxWorkers(n),
		vegeta.Connections(conns), vegeta.MaxConnections(conns),
		vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
	results := atk.Attack(vegeta.NewStaticTargeter(e.target), vegeta.ConstantPacer{}, d, "")
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			atk.Stop()
		case <-done:
		}
	}()

	var lat []time.Duration
	var wrong int
	var firstWrong string
	var begin, end time.Time
	for r := range results {
		if begin.IsZero() || r.Timestamp.Before(begin) {
			begin = r.Timestamp
		}
		if r.End().After(end) {
			end = r.End()
		}
		var bad string
		switch {
		case r.Error != "" && r.Code == 0:
			bad = r.Error
		case r.Code != http.StatusOK:
			bad = fmt.Sprintf("status %d: %.200q", r.Code, r.Body)
		default:
			if err := e.check(r.Body); err != nil {
				bad = err.Error()
			}
		}
		if bad != "" {
			if wrong == 0 {
				firstWrong = bad
			}
			wrong++
			continue
		}
		lat = append(lat, r.Latency)
	}
	if err := ctx.Err(); err != nil {
		return sample{}, err
	}
	if wrong > 0 {
		return sample{}, fmt.Errorf("%s: %d of %d answers wrong; the first: %s",
			e.server, wrong, wrong+len(lat), firstWrong)
	}
	if len(lat) == 0 {
		return sample{}, fmt.Errorf("%s: no answers in %s", e.server, d)
	}
	cpu1, cpuOK1 := processCPU(e.pid)
	slices.Sort(lat)
	elapsed := end.Sub(begin).Seconds()
	var cpu time.Duration
	if cpuOK && cpuOK1 {
		cpu = (cpu1 - cpu0) / time.Duration(len(lat)*e.perReq)
	}
	return sample{
		cpu:       cpu,
		requests:  len(lat),
		perSecond: float64(len(lat)*e.perReq) / elapsed,
		p50:       quantile(lat, 0.50),
		p99:       quantile(lat, 0.99),
	}, nil
}

// quantile is the nearest-rank quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// askOnce sends e's request once, outside any measurement, and checks
// the answer.
func askOnce(ctx context.Context, c *http.Client, e endpoint) error {
	req, err := e.target.Request()
	if err != nil {
		return err
	}
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d: %.200q", e.server, resp.StatusCode, body)
	}
	if err := e.check(body); err != nil {
		return fmt.Errorf("%s: %w", e.server, err)
	}
	return nil
}
