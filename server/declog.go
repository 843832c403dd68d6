package server

import (
	"context"
	"time"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/decision/decisionlog"
	"github.com/tierguard/tierguard/server/identity"
)

// logDecision records one decision in the decision log, when one is
// configured. The entry's input is the decision input exactly as the
// policy saw it: verified claims and the check, never a token.
func (s *Server) logDecision(ctx context.Context, id identity.Identity, check decision.Check,
	d decision.Decision, decisionID, batchID string, latency time.Duration) {
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
		Input:      logInput(id, check),
		Result:     d,
		Latency:    latency,
	})
}

func logInput(id identity.Identity, c decision.Check) map[string]any {
	subject := map[string]any{"authenticated": id.Authenticated}
	if id.Authenticated {
		subject["iss"] = id.Issuer
		subject["sub"] = id.Subject
		subject["client_id"] = id.ClientID
		subject["scopes"] = id.Scopes
		subject["groups"] = id.Groups
		subject["claims"] = id.Claims
	}
	in := map[string]any{"subject": subject, "check": c}
	if id.Profile != nil {
		in["profile"] = id.Profile
	}
	return in
}
