package server

import (
	"context"
	"time"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/decision/decisionlog"
)

// logDecision records one decision in the decision log, when one is
// configured. The entry's input is the decision input exactly as the
// policy saw it: verified claims and the check, never a token.
func (s *Server) logDecision(ctx context.Context, subject decision.Subject, profile map[string]any,
	check decision.Check, d decision.Decision, decisionID, batchID string, latency time.Duration) {
	if s.cfg.DecisionLog == nil {
		return
	}
	path := decision.DecisionPath
	if batchID != "" {
		path = decision.BatchPath
	}
	s.cfg.DecisionLog.Log(ctx, decisionlog.Entry{
		DecisionID: decisionID,
		BatchID:    batchID,
		Revision:   d.Revision,
		Path:       path,
		Timestamp:  s.cfg.Now().UTC(),
		Input:      logInput(subject, profile, check),
		Result:     d,
		Latency:    latency,
	})
}

func logInput(s decision.Subject, profile map[string]any, c decision.Check) map[string]any {
	subject := map[string]any{"authenticated": s.Authenticated}
	if s.Authenticated {
		subject["iss"] = s.Issuer
		subject["sub"] = s.Subject
		subject["client_id"] = s.ClientID
		subject["scopes"] = s.Scopes
		subject["groups"] = s.Groups
		subject["claims"] = s.Claims
	}
	// Paths, ids and names come from the client: a token pasted into one
	// must not reach the log.
	c.Path, c.ID, c.Name = redactJWTs(c.Path), redactJWTs(c.ID), redactJWTs(c.Name)
	in := map[string]any{"subject": subject, "check": c}
	if profile != nil {
		in["profile"] = profile
	}
	return in
}
