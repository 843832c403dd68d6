package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// service is a live tierguard on a loopback listener, wired as
// `tierguard serve --dev` wires it: embedded policies, the dev issuer on
// the same listener, its keys fetched over real HTTP.
type service struct {
	base     string
	dev      *identity.DevIssuer
	engine   *decision.Engine
	verifier *identity.Verifier
	logs     *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serviceOption adjusts what startService wires.
type serviceOption func(*serviceOptions)

type serviceOptions struct {
	policy       *decision.Policy
	extraIssuers []identity.IssuerConfig
	verifierOpts identity.Options
}

func withPolicy(p *decision.Policy) serviceOption {
	return func(o *serviceOptions) { o.policy = p }
}

// withVerifierOptions sets the verifier's options (a clock, a shorter
// refetch cooldown); startService always supplies the logger.
func withVerifierOptions(opts identity.Options) serviceOption {
	return func(o *serviceOptions) { o.verifierOpts = opts }
}

// withIssuer trusts another issuer too; only the dev issuer's keys are
// awaited at start.
func withIssuer(c identity.IssuerConfig) serviceOption {
	return func(o *serviceOptions) { o.extraIssuers = append(o.extraIssuers, c) }
}

func startService(t testing.TB, cfg server.Config, opts ...serviceOption) *service {
	t.Helper()
	var o serviceOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	p := o.policy
	if p == nil {
		if p, err = decision.Embedded(); err != nil {
			t.Fatal(err)
		}
	}
	engine, err := decision.NewEngine(ctx, p, decision.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDevIssuer(base + "/dev")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dev = dev
	issuers := append([]identity.IssuerConfig{dev.IssuerConfig()}, o.extraIssuers...)
	vopts := o.verifierOpts
	vopts.Logger = logger
	verifier, err := identity.NewVerifier(issuers, vopts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, engine, verifier, logger)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l, 5*time.Second) }()
	verifier.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	s := &service{base: base, dev: dev, engine: engine, logs: logs, verifier: verifier}
	deadline := time.Now().Add(10 * time.Second)
	for !devReady(verifier, dev) {
		if time.Now().After(deadline) {
			t.Fatalf("dev issuer keys not fetched within 10s; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func devReady(v *identity.Verifier, dev *identity.DevIssuer) bool {
	for _, st := range v.Status() {
		if st.Issuer == dev.IssuerConfig().Issuer {
			return st.Ready
		}
	}
	return false
}

// token mints a dev access token of the given tier over HTTP, as a
// newcomer following the README would.
func (s *service) token(t testing.TB, tier string) string {
	t.Helper()
	if tier == "anonymous" {
		return ""
	}
	body := `{"sub": "` + tier + `@example.com", "tier": "` + tier + `"}`
	resp, err := http.Post(s.base+"/dev/token", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr identity.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /dev/token: %d %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends body as JSON (nil for none) with a bearer token (empty for
// none) and header pairs.
func (s *service) do(t testing.TB, method, path, token string, body any, header ...string) response {
	t.Helper()
	if body == nil {
		return s.send(t, method, path, token, "", nil, header...)
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return s.send(t, method, path, token, "application/json", b, header...)
}

// send is do with a raw body of the given content type.
func (s *service) send(t testing.TB, method, path, token, contentType string, body []byte,
	header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, raw)
		}
	}
	return r
}

var tiers = []string{"anonymous", "free", "plus", "pro"}

// TestStory is the story of DESIGN.md on the running service.
func TestStory(t *testing.T) {
	s := startService(t, server.Config{})
	free, plus, pro := s.token(t, "free"), s.token(t, "plus"), s.token(t, "pro")

	r := s.do(t, "GET", "/api/treasure-map", "", nil)
	if r.status != 401 || r.body["reason"] != "unauthenticated" || r.body["required_tier"] != "plus" {
		t.Errorf("anonymous GET /api/treasure-map = %d %v, want 401 unauthenticated needing plus", r.status, r.raw)
	}

	r = s.do(t, "GET", "/api/treasure-map", free, nil)
	if r.status != 403 || r.body["reason"] != "tier_required" || r.body["required_tier"] != "plus" {
		t.Errorf("free GET /api/treasure-map = %d %s, want 403 tier_required needing plus", r.status, r.raw)
	}
	if id, _ := r.body["decision_id"].(string); id == "" {
		t.Errorf("403 without a decision_id: %s", r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("403 Content-Type = %q, want application/problem+json", ct)
	}

	r = s.do(t, "GET", "/api/treasure-map", plus, nil)
	if r.status != 200 || !strings.Contains(r.raw, "X marks the spot") {
		t.Errorf("plus GET /api/treasure-map = %d %s, want 200 and the map", r.status, r.raw)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("API data Cache-Control = %q, want no-store", got)
	}
	if got := r.header.Get("Tierguard-Revision"); got != s.engine.Current().ID {
		t.Errorf("Tierguard-Revision = %q, want %q", got, s.engine.Current().ID)
	}

	r = s.do(t, "GET", "/api/admin", plus, nil)
	if r.status != 403 || r.body["required_tier"] != "pro" {
		t.Errorf("plus GET /api/admin = %d %s, want 403 needing pro", r.status, r.raw)
	}
	r = s.do(t, "GET", "/api/admin", pro, nil)
	if r.status != 200 {
		t.Errorf("pro GET /api/admin = %d %s, want 200", r.status, r.raw)
	}

	r = s.do(t, "POST", "/authz/check", free, map[string]any{"kind": "ui", "path": "/protected-content"})
	if r.status != 200 || r.body["allow"] != false || r.body["reason"] != "tier_required" ||
		r.body["required_tier"] != "plus" {
		t.Errorf("free /authz/check /protected-content = %d %s", r.status, r.raw)
	}
}

// TestNoAllowedPageMeetsA403 is the consistency property on the running
// service: for every tier, every page /authz/check allows has every API
// route it needs answered with an allow by the API itself.
func TestNoAllowedPageMeetsA403(t *testing.T) {
	s := startService(t, server.Config{})
	tables := s.engine.Current().Tables()
	opened := 0
	for _, tier := range tiers {
		token := s.token(t, tier)
		for _, page := range tables.UIRoutes {
			path := concrete(page.Template)
			r := s.do(t, "POST", "/authz/check", token, map[string]any{"kind": "ui", "path": path})
			if r.status != 200 {
				t.Fatalf("%s: /authz/check ui %s = %d %s", tier, path, r.status, r.raw)
			}
			if r.body["allow"] != true {
				continue
			}
			opened++
			for _, req := range page.Requires {
				method, template, _ := strings.Cut(req, " ")
				api := s.do(t, method, concrete(template), token, bodyFor(method))
				if api.status == 401 || api.status == 403 {
					t.Errorf("%s may open %s, but its call %s %s answers %d %s",
						tier, path, method, concrete(template), api.status, api.raw)
				}
			}
		}
	}
	if opened == 0 {
		t.Fatal("no page opened for any tier: the property was never exercised")
	}
}

// concrete fills a template's parameters with a value the demo API knows.
func concrete(template string) string {
	parts := strings.Split(template, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = "1"
		}
	}
	return strings.Join(parts, "/")
}

func bodyFor(method string) any {
	if method == "GET" || method == "DELETE" {
		return nil
	}
	return map[string]string{"text": "hi", "name": "n"}
}
