package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tierguard/tierguard/decision/decisionlog"
	"github.com/tierguard/tierguard/server"
)

func TestDecisionLog(t *testing.T) {
	out := &syncBuffer{}
	dl, err := decisionlog.New(decisionlog.Config{
		Console: true,
		Mask:    []decisionlog.MaskRule{{Op: decisionlog.OpRemove, Path: "/input/subject/claims/uid"}},
	}, nil, decisionlog.WithOutput(out))
	if err != nil {
		t.Fatal(err)
	}
	s := startService(t, server.Config{DecisionLog: dl})
	free := s.token(t, "free")

	denied := s.do(t, "GET", "/api/treasure-map", free, nil)
	batch := s.do(t, "POST", "/authz/check", free, map[string]any{"checks": []map[string]any{
		{"kind": "feature", "name": "hd"}, {"kind": "ui", "path": "/videos/3"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dl.Close(ctx); err != nil {
		t.Fatal(err)
	}

	type event struct {
		DecisionID string         `json:"decision_id"`
		BatchID    string         `json:"batch_decision_id"`
		Revision   string         `json:"revision"`
		Path       string         `json:"path"`
		Input      map[string]any `json:"input"`
		Result     map[string]any `json:"result"`
	}
	var events []event
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("decision log line is not JSON: %v\n%s", err, sc.Text())
		}
		events = append(events, e)
	}
	if len(events) != 3 {
		t.Fatalf("%d decision log events, want 3 (one per decision):\n%s", len(events), out)
	}

	first := events[0]
	if first.DecisionID != denied.body["decision_id"] || first.Result["reason"] != "tier_required" ||
		first.Revision != s.engine.Current().ID || first.Path != "tierguard/authz/decision" {
		t.Errorf("first event %+v does not match the 403 %s", first, denied.raw)
	}
	check := first.Input["check"].(map[string]any)
	if check["template"] != "/api/treasure-map" {
		t.Errorf("logged check %v, want the treasure map's template", check)
	}
	claims := first.Input["subject"].(map[string]any)["claims"].(map[string]any)
	if _, ok := claims["uid"]; ok {
		t.Error("the mask rule did not remove /input/subject/claims/uid")
	}

	decisions := batch.body["decisions"].([]any)
	for i, e := range events[1:] {
		if e.BatchID == "" || e.BatchID != events[1].BatchID {
			t.Errorf("batch events do not share a batch id: %q", e.BatchID)
		}
		if want := decisions[i].(map[string]any)["decision_id"]; e.DecisionID != want {
			t.Errorf("batch event %d has id %s, response says %v", i, e.DecisionID, want)
		}
	}
	if strings.Contains(out.String(), free) || strings.Contains(out.String(), strings.Split(free, ".")[2]) {
		t.Error("the decision log holds the token")
	}
}
