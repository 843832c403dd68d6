package server_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tierguard/tierguard/server"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/server")

// golden compares got (as indented JSON) with testdata/server/name.json.
func golden(t *testing.T, name string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "testdata", "server", name+".json")
	if *update {
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./server -update creates it; review the diff)", err)
	}
	if diff := cmp.Diff(strings.TrimSpace(string(want)), string(b)); diff != "" {
		t.Errorf("%s differs from its golden file (-want +got):\n%s", name, diff)
	}
}

// stable drops the members that change on every call.
func stable(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		switch k {
		case "decision_id", "request_id", "expires_at", "revision":
			continue
		}
		out[k] = v
	}
	if ds, ok := m["decisions"].([]any); ok {
		var clean []any
		for _, d := range ds {
			clean = append(clean, stable(d.(map[string]any)))
		}
		out["decisions"] = clean
	}
	return out
}

func TestRouteMapForEveryTier(t *testing.T) {
	s := startService(t, server.Config{})
	for _, tier := range tiers {
		t.Run(tier, func(t *testing.T) {
			r := s.do(t, "GET", "/authz/routes", s.token(t, tier), nil)
			if r.status != 200 {
				t.Fatalf("GET /authz/routes = %d %s", r.status, r.raw)
			}
			if r.body["revision"] != s.engine.Current().ID {
				t.Errorf("revision = %v, want %s", r.body["revision"], s.engine.Current().ID)
			}
			if got := r.header.Get("Cache-Control"); got != "private, no-cache" {
				t.Errorf("Cache-Control = %q, want private, no-cache", got)
			}
			golden(t, "routes-"+tier, stable(r.body))
		})
	}
}

func TestRouteMapETag(t *testing.T) {
	s := startService(t, server.Config{})
	free, plus := s.token(t, "free"), s.token(t, "plus")
	first := s.do(t, "GET", "/authz/routes", free, nil)
	etag := first.header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Fatalf("ETag = %q, want a strong entity tag", etag)
	}

	// Another token of the same tier says the same thing: same ETag.
	again := s.do(t, "GET", "/authz/routes", s.token(t, "free"), nil)
	if got := again.header.Get("ETag"); got != etag {
		t.Errorf("same tier, ETag %q then %q", etag, got)
	}

	tests := []struct {
		name, token, ifNoneMatch string
		want                     int
	}{
		{"matching tag", free, etag, http.StatusNotModified},
		{"weak form of the tag", free, "W/" + etag, http.StatusNotModified},
		{"in a list", free, `"nope", ` + etag, http.StatusNotModified},
		{"star", free, "*", http.StatusNotModified},
		{"other tag", free, `"nope"`, http.StatusOK},
		{"other tier", plus, etag, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(t, "GET", "/authz/routes", tt.token, nil, "If-None-Match", tt.ifNoneMatch)
			if r.status != tt.want {
				t.Errorf("If-None-Match %s: status %d, want %d", tt.ifNoneMatch, r.status, tt.want)
			}
			if r.status == http.StatusNotModified && (r.raw != "" || r.header.Get("ETag") != etag ||
				r.header.Get("Tierguard-Revision") == "") {
				t.Errorf("304 must carry the ETag and revision and no body: %v %q", r.header, r.raw)
			}
		})
	}
}

func TestCheckSingleAndBatch(t *testing.T) {
	s := startService(t, server.Config{})
	plus := s.token(t, "plus")

	r := s.do(t, "POST", "/authz/check", plus, map[string]any{"kind": "api", "method": "GET", "path": "/api/videos/42/download"})
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.raw)
	}
	for _, k := range []string{"allow", "reason", "required_tier", "decision_id", "revision", "expires_at"} {
		if _, ok := r.body[k]; !ok {
			t.Errorf("single answer lacks %q: %s", k, r.raw)
		}
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}

	checks := []map[string]any{
		{"kind": "ui", "path": "/videos/7"},
		{"kind": "ui", "path": "/admin"},
		{"kind": "api", "method": "POST", "path": "/api/playlists"},
		{"kind": "api", "method": "GET", "path": "/api/videos/7?autoplay=1"},
		{"kind": "api", "method": "PATCH", "path": "/api/profile"},
		{"kind": "api", "method": "GET", "path": "/api/nowhere"},
		{"kind": "ui", "path": "/nowhere"},
		{"kind": "resource", "type": "video", "action": "download", "id": "7"},
		{"kind": "feature", "name": "hd"},
		{"kind": "feature", "name": "8k"},
	}
	r = s.do(t, "POST", "/authz/check", plus, map[string]any{"checks": checks})
	if r.status != 200 {
		t.Fatalf("batch status %d %s", r.status, r.raw)
	}
	golden(t, "check-batch-plus", stable(r.body))
}

func TestCheckRejectsMalformedChecks(t *testing.T) {
	s := startService(t, server.Config{})
	many := make([]map[string]any, server.MaxBatch+1)
	for i := range many {
		many[i] = map[string]any{"kind": "feature", "name": "hd"}
	}
	tests := []struct {
		name   string
		body   string
		reason string
		field  string
	}{
		{"not JSON", `{"kind":`, "invalid_request", ""},
		{"an array", `[{"kind": "ui", "path": "/"}]`, "invalid_request", ""},
		{"trailing data", `{"kind": "ui", "path": "/"} {}`, "invalid_request", ""},
		{"no kind", `{"path": "/"}`, "invalid_request", "kind"},
		{"unknown kind", `{"kind": "page", "path": "/"}`, "invalid_request", "kind"},
		{"kind not a string", `{"kind": 1}`, "invalid_request", "kind"},
		{"api without method", `{"kind": "api", "path": "/api/news"}`, "invalid_request", "method"},
		{"api lower-case method", `{"kind": "api", "method": "get", "path": "/api/news"}`, "invalid_request", "method"},
		{"relative path", `{"kind": "ui", "path": "admin"}`, "invalid_request", "path"},
		{"member of another kind", `{"kind": "feature", "name": "hd", "path": "/"}`, "invalid_request", "path"},
		{"template is never taken from a client", `{"kind": "ui", "path": "/", "template": "/admin"}`, "invalid_request", "template"},
		{"identity is never taken from a body", `{"kind": "ui", "path": "/", "subject": {"tier": "pro"}}`, "invalid_request", "subject"},
		{"empty batch", `{"checks": []}`, "invalid_request", "checks"},
		{"batch not an array", `{"checks": {}}`, "invalid_request", "checks"},
		{"batch with another member", `{"checks": [{"kind": "feature", "name": "hd"}], "kind": "ui"}`, "invalid_request", "kind"},
		{"bad item names its index", `{"checks": [{"kind": "feature", "name": "hd"}, {"kind": "feature"}]}`, "invalid_request", "checks[1].name"},
		{"null item", `{"checks": [null]}`, "invalid_request", "checks[0]"},
		{"too many", mustJSON(map[string]any{"checks": many}), "batch_too_large", "checks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.rawPost(t, "/authz/check", "application/json", tt.body)
			if r.status != 400 || r.body["reason"] != tt.reason || fmt.Sprint(r.body["field"]) != orNil(tt.field) {
				t.Errorf("POST %s = %d %s, want 400 %s naming %q", tt.body, r.status, r.raw, tt.reason, tt.field)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}

	r := s.rawPost(t, "/authz/check", "text/plain", `{"kind": "ui", "path": "/"}`)
	if r.status != 415 || r.body["reason"] != "unsupported_media_type" {
		t.Errorf("text/plain body = %d %s, want 415", r.status, r.raw)
	}
	big := `{"kind": "feature", "name": "` + strings.Repeat("a", 70<<10) + `"}`
	r = s.rawPost(t, "/authz/check", "application/json", big)
	if r.status != 413 || r.body["reason"] != "body_too_large" {
		t.Errorf("70 KiB body = %d %s, want 413 body_too_large", r.status, r.raw)
	}
}

func orNil(s string) string {
	if s == "" {
		return "<nil>"
	}
	return s
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (s *service) rawPost(t testing.TB, path, contentType, body string) response {
	t.Helper()
	return s.send(t, http.MethodPost, path, "", contentType, []byte(body))
}
