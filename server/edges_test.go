package server_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/policies"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// A bad token is a 401 on every route, known or not, public or not, and
// never an anonymous request.
func TestBadTokenIs401Everywhere(t *testing.T) {
	s := startService(t, server.Config{})
	good := s.token(t, "pro")
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))

	routes := []struct{ method, path string }{
		{"GET", "/api/news"}, // public for anonymous
		{"GET", "/api/treasure-map"},
		{"GET", "/api/does-not-exist"},
		{"DELETE", "/api/news"}, // a method the route lacks
		{"GET", "/authz/routes"},
		{"GET", "/authz/forward"},
	}
	for _, rt := range routes {
		r := s.do(t, rt.method, rt.path, tampered, nil)
		if r.status != 401 || r.body["reason"] != "token_signature" ||
			r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s %s with a tampered token = %d %v %s, want 401 token_signature",
				rt.method, rt.path, r.status, r.header.Get("WWW-Authenticate"), r.raw)
		}
		if strings.Contains(r.raw, parts[1]) {
			t.Errorf("%s %s: the response quotes the token", rt.method, rt.path)
		}
	}
	r := s.do(t, "POST", "/authz/check", tampered, map[string]any{"kind": "ui", "path": "/"})
	if r.status != 401 {
		t.Errorf("POST /authz/check with a tampered token = %d, want 401", r.status)
	}
	if strings.Contains(s.logs.String(), parts[2]) || strings.Contains(s.logs.String(), parts[1]) {
		t.Error("the log holds token text")
	}
}

func TestMalformedAuthorizationIs400(t *testing.T) {
	s := startService(t, server.Config{})
	for _, h := range []string{"Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b", "Bearer a.b.c.d", "Token x.y.z"} {
		r := s.do(t, "GET", "/api/news", "", nil, "Authorization", h)
		if r.status != 400 || r.body["reason"] != "invalid_request" {
			t.Errorf("Authorization %q = %d %s, want 400 invalid_request", h, r.status, r.raw)
		}
	}
}

// An issuer whose keys cannot be fetched leaves its tokens at 503 with
// Retry-After, and readiness says which issuer is missing.
func TestIssuerUnavailable(t *testing.T) {
	down := "http://127.0.0.1:1/oauth2/default"
	s := startService(t, server.Config{}, withIssuer(identity.IssuerConfig{Issuer: down, Audience: "api://default"}))
	token := unsignedJWT(t, map[string]any{"iss": down, "sub": "x", "aud": "api://default", "exp": 4e9, "iat": 1e9})

	r := s.do(t, "GET", "/api/treasure-map", token, nil)
	if r.status != 503 || r.body["reason"] != "issuer_unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("token of an unreachable issuer = %d %v %s, want 503 issuer_unavailable with Retry-After",
			r.status, r.header, r.raw)
	}
	r = s.do(t, "GET", "/api/news", "", nil)
	if r.status != 200 {
		t.Errorf("anonymous public route while an issuer is down = %d, want 200", r.status)
	}
	r = s.do(t, "GET", "/health/ready", "", nil)
	if r.status != 503 || !strings.Contains(r.raw, down) {
		t.Errorf("/health/ready = %d %s, want 503 naming %s", r.status, r.raw, down)
	}
}

func unsignedJWT(t testing.TB, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]any{"alg": "RS256", "kid": "k1"}) + "." + enc(claims) + "." +
		base64.RawURLEncoding.EncodeToString([]byte("not a signature"))
}

// An /api route Echo serves but the policy does not declare is denied and
// reported at start.
func TestUndeclaredRouteIsDeniedAndReported(t *testing.T) {
	data, err := readPolicyFile("tierguard/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc["api_routes"].(map[string]any)["GET"].(map[string]any), "/api/analytics")
	// The admin page needs /api/analytics; drop the page too so the policy
	// stays consistent and only the route is missing.
	delete(doc["ui_routes"].(map[string]any), "/admin")
	trimmed, _ := json.Marshal(doc)
	module, _ := readPolicyFile("tierguard/authz/authz.rego")
	p, err := decision.LoadFS(fstest.MapFS{
		"tierguard/data.json":        {Data: trimmed},
		"tierguard/authz/authz.rego": {Data: module},
	})
	if err != nil {
		t.Fatal(err)
	}

	s := startService(t, server.Config{}, withPolicy(p))
	r := s.do(t, "GET", "/api/analytics", s.token(t, "pro"), nil)
	if r.status != 403 || r.body["reason"] != "route_unknown" {
		t.Errorf("undeclared GET /api/analytics as pro = %d %s, want 403 route_unknown", r.status, r.raw)
	}
	if !strings.Contains(s.logs.String(), `"template":"/api/analytics"`) {
		t.Errorf("start-up did not report /api/analytics:\n%s", s.logs)
	}
}

func readPolicyFile(name string) ([]byte, error) {
	f, err := policies.FS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func TestCORS(t *testing.T) {
	origin := "https://app.example.com"
	s := startService(t, server.Config{CORSOrigins: []string{origin}})

	preflight := func(from string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", s.base+"/api/treasure-map", nil)
		req.Header.Set("Origin", from)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization, x-id-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := preflight(origin)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "x-id-token") {
		t.Errorf("preflight from %s = %d %v", origin, resp.StatusCode, resp.Header)
	}
	if strings.Contains(string(body), "X marks") {
		t.Error("a preflight returned protected data")
	}

	resp = preflight("https://evil.example.com")
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("preflight from another origin got Access-Control-Allow-Origin %q", got)
	}

	r := s.do(t, "GET", "/api/treasure-map", s.token(t, "plus"), nil, "Origin", origin)
	if r.header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Tierguard-Revision") {
		t.Errorf("CORS response headers: %v", r.header)
	}

	if _, err := server.New(server.Config{CORSOrigins: []string{"*"}}, s.engine, s.verifier, nil); err == nil {
		t.Error("a * CORS origin was accepted")
	}
}

func TestForwardAuth(t *testing.T) {
	s := startService(t, server.Config{})
	free, plus := s.token(t, "free"), s.token(t, "plus")
	tests := []struct {
		name           string
		token          string
		headers        []string
		status         int
		reason, needed string
	}{
		{"nginx, anonymous", "", []string{"X-Original-Method", "GET", "X-Original-URI", "/api/treasure-map"}, 401, "unauthenticated", "plus"},
		{"nginx, free", free, []string{"X-Original-Method", "GET", "X-Original-URI", "/api/treasure-map"}, 403, "tier_required", "plus"},
		{"nginx, plus", plus, []string{"X-Original-Method", "GET", "X-Original-URI", "/api/treasure-map?x=1"}, 200, "allowed", ""},
		{"traefik, plus, pro route", plus, []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/videos/3/download", "X-Forwarded-Host", "api.example.com"}, 403, "tier_required", "pro"},
		{"traefik, free, param route", free, []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/videos/3"}, 200, "allowed", ""},
		{"unknown route", plus, []string{"X-Original-Method", "GET", "X-Original-URI", "/api/vault"}, 403, "route_unknown", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(t, "GET", "/authz/forward", tt.token, nil, tt.headers...)
			if r.status != tt.status || r.header.Get("Tierguard-Reason") != tt.reason ||
				r.header.Get("Tierguard-Required-Tier") != tt.needed || r.header.Get("Tierguard-Decision-Id") == "" {
				t.Errorf("forward = %d reason %q needs %q, want %d %q %q",
					r.status, r.header.Get("Tierguard-Reason"), r.header.Get("Tierguard-Required-Tier"),
					tt.status, tt.reason, tt.needed)
			}
		})
	}
	r := s.do(t, "GET", "/authz/forward", plus, nil)
	if r.status != 400 {
		t.Errorf("forward without the original request's headers = %d, want 400", r.status)
	}

	// A client's own X-Original-* copied through by a proxy must not name
	// another request than the proxy's X-Forwarded-* does.
	spoof := []string{"X-Original-Method", "GET", "X-Original-URI", "/api/news",
		"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/treasure-map"}
	r = s.do(t, "GET", "/authz/forward", free, nil, spoof...)
	if r.status != 400 || r.header.Get("Tierguard-Reason") != "invalid_request" {
		t.Errorf("disagreeing proxy headers = %d %q, want 400 invalid_request",
			r.status, r.header.Get("Tierguard-Reason"))
	}
	pinned := startService(t, server.Config{ForwardAuthProxy: server.ProxyTraefik})
	r = pinned.do(t, "GET", "/authz/forward", pinned.token(t, "free"), nil, spoof...)
	if r.status != 403 || r.header.Get("Tierguard-Reason") != "tier_required" {
		t.Errorf("pinned to traefik, spoofed X-Original-URI = %d %q, want the treasure map's 403",
			r.status, r.header.Get("Tierguard-Reason"))
	}

	r = s.do(t, "GET", "/authz/forward", "aaa.bbb.ccc", nil, "X-Original-Method", "GET", "X-Original-URI", "/api/news")
	if r.status != 401 || r.header.Get("Tierguard-Reason") != "token_malformed" {
		t.Errorf("forward with a bad token = %d %q, want 401 with Tierguard-Reason token_malformed",
			r.status, r.header.Get("Tierguard-Reason"))
	}
}

func TestHealthAndMetrics(t *testing.T) {
	s := startService(t, server.Config{})
	if r := s.do(t, "GET", "/health/live", "", nil); r.status != 200 {
		t.Errorf("/health/live = %d", r.status)
	}
	r := s.do(t, "GET", "/health/ready", "", nil)
	if r.status != 200 || r.body["ready"] != true {
		t.Errorf("/health/ready = %d %s", r.status, r.raw)
	}

	s.do(t, "GET", "/api/treasure-map", s.token(t, "free"), nil)
	s.do(t, "GET", "/api/treasure-map", "x.y.z", nil)
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`tierguard_decisions_total{allow="false",kind="api",reason="tier_required",route="GET /api/treasure-map",tier="free"} 1`,
		`tierguard_decision_duration_seconds_bucket{kind="api"`,
		`tierguard_token_failures_total{reason="token_malformed"} 1`,
		`tierguard_policy_revision_info{revision="` + s.engine.Current().ID + `"`,
		`tierguard_policy_errors_total{cause="undefined"} 0`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Findings of a newcomer's attack session, each kept fixed by a test.
func TestHardening(t *testing.T) {
	s := startService(t, server.Config{})
	free := s.token(t, "free")

	t.Run("a token as X-Request-ID is neither echoed nor logged", func(t *testing.T) {
		r := s.do(t, "GET", "/api/treasure-map", free, nil, "X-Request-ID", free)
		if got := r.header.Get("X-Request-Id"); got == free || got == "" {
			t.Errorf("X-Request-Id = %.20q..., want a fresh id", got)
		}
		if strings.Contains(r.raw, free) || strings.Contains(s.logs.String(), free) {
			t.Error("the token came back in the body or reached the log")
		}
		r = s.do(t, "GET", "/api/news", "", nil, "X-Request-ID", "req-42_ok:1")
		if got := r.header.Get("X-Request-Id"); got != "req-42_ok:1" {
			t.Errorf("a well-formed X-Request-ID was replaced by %q", got)
		}
	})

	t.Run("the access log has the status the client got", func(t *testing.T) {
		r := s.do(t, "GET", "/api/treasure-map", free, nil, "X-Request-ID", "status-check-1")
		if r.status != 403 {
			t.Fatalf("status %d", r.status)
		}
		found := 0
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if !strings.Contains(line, `"msg":"request"`) || !strings.Contains(line, "status-check-1") {
				continue
			}
			found++
			if !strings.Contains(line, `"status":403`) {
				t.Errorf("access log line disagrees with the 403: %s", line)
			}
		}
		if found != 1 {
			t.Errorf("%d access log lines for the request, want 1", found)
		}
	})

	t.Run("a body broken on the wire is 400, not 500", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "POST /authz/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("malformed chunked body = %d, want 400", resp.StatusCode)
		}
	})

	t.Run("a member named twice is refused", func(t *testing.T) {
		r := s.rawPost(t, "/authz/check", "application/json",
			`{"kind": "ui", "path": "/protected-content", "path": "/"}`)
		if r.status != 400 || r.body["reason"] != "invalid_request" {
			t.Errorf("duplicate path = %d %s, want 400", r.status, r.raw)
		}
	})

	t.Run("a forward-auth header given twice is refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.base+"/authz/forward", nil)
		req.Header.Set("Authorization", "Bearer "+free)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Add("X-Original-URI", "/api/news")
		req.Header.Add("X-Original-URI", "/api/treasure-map")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("two X-Original-URI headers = %d, want 400", resp.StatusCode)
		}
	})
}
