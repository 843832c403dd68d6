package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

// The fuzz targets here run on their seed corpora (testdata/fuzz/) in
// every `go test`, and for a bounded time under test.sh with FUZZ=1 or
// CI=true. They hold the decoders and the one matcher to properties, not
// to examples: no input panics, every refusal is a 400-class problem, and
// whatever is accepted is something the rest of the server can trust.

// fuzzEnv is one server, built as New builds it, shared by every input of
// a fuzzing process. The dev issuer answers on loopback so that a PEP
// token verifies over HTTP exactly as in production.
type fuzzEnv struct {
	srv      *Server
	pepToken string
	declared map[string]bool // "METHOD template" the resolver may answer
	pages    map[string]bool // UI templates
	uiRef    *echo.Echo      // a real Echo with the UI table's routes
}

var (
	fuzzOnce sync.Once
	fuzzErr  error
	fuzzE    *fuzzEnv
)

func fuzzSetup(tb testing.TB) *fuzzEnv {
	tb.Helper()
	fuzzOnce.Do(func() { fuzzE, fuzzErr = newFuzzEnv() })
	if fuzzErr != nil {
		tb.Fatal(fuzzErr)
	}
	return fuzzE
}

func newFuzzEnv() (*fuzzEnv, error) {
	ctx := context.Background()
	p, err := decision.Embedded()
	if err != nil {
		return nil, err
	}
	engine, err := decision.NewEngine(ctx, p)
	if err != nil {
		return nil, err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dev, err := identity.NewDevIssuer("http://" + l.Addr().String() + "/dev")
	if err != nil {
		return nil, err
	}
	go func() { _ = http.Serve(l, dev.Handler()) }() // lives as long as the fuzzing process
	verifier, err := identity.NewVerifier([]identity.IssuerConfig{dev.IssuerConfig()}, identity.Options{})
	if err != nil {
		return nil, err
	}
	verifier.Start(ctx)
	for deadline := time.Now().Add(10 * time.Second); !verifier.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, errors.New("dev issuer keys not fetched within 10s")
		}
	}

	cfg := Config{PEPClients: []PEPClient{{ClientID: identity.DevClientID, TrustSubjectProperties: true}}}
	srv, err := New(cfg, engine, verifier, nil)
	if err != nil {
		return nil, err
	}
	pep, err := dev.Mint(identity.TokenRequest{Sub: "gateway"})
	if err != nil {
		return nil, err
	}

	env := &fuzzEnv{srv: srv, pepToken: pep.AccessToken,
		declared: map[string]bool{}, pages: map[string]bool{}, uiRef: echo.New()}
	rev := engine.Current()
	for _, r := range append(rev.Tables().APIRoutes, srv.undeclared(rev)...) {
		env.declared[r.Method+" "+r.Template] = true
	}
	for _, page := range rev.Tables().UIRoutes {
		env.pages[page.Template] = true
		env.uiRef.GET(page.Template, func(c echo.Context) error {
			return c.String(http.StatusOK, c.Path())
		})
	}
	return env, nil
}

// readTarget parses "METHOD target" as net/http's server parses a request
// line. ok is false when the server would refuse the line, or would not
// read target as one request target (spaces, control bytes).
func readTarget(method, target string) (*http.Request, bool) {
	if strings.ContainsAny(target, " \r\n") || strings.ContainsAny(method, " \r\n") {
		return nil, false
	}
	raw := method + " " + target + " HTTP/1.1\r\nHost: tierguard.test\r\n\r\n"
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil || req.RequestURI != target {
		return nil, false
	}
	return req, true
}

// servedTemplate is the API template the serving Echo instance routes a
// request for method and target to, as the enforcing middleware sees it in
// c.Path(), or "" when no API route of the policy's table takes it.
func (env *fuzzEnv) servedTemplate(req *http.Request) string {
	e := env.srv.echo
	c := e.NewContext(req, nil)
	e.Router().Find(req.Method, echo.GetPath(req), c)
	template := c.Path()
	if !env.srv.registered[route{req.Method, template}] || !strings.HasPrefix(template, "/api/") ||
		req.Method == echo.RouteNotFound {
		return ""
	}
	return template
}

func FuzzResolveAPI(f *testing.F) {
	env := fuzzSetup(f)
	resolver := env.srv.resolver(env.srv.engine.Current())
	f.Fuzz(func(t *testing.T, method, target string) {
		got := resolver.API(method, target)
		if got != "" && !env.declared[method+" "+got] {
			t.Fatalf("API(%q, %q) = %q, which the policy does not declare", method, target, got)
		}
		if !strings.HasPrefix(target, "/") {
			if got != "" {
				t.Fatalf("API(%q, %q) = %q for a target not in origin form", method, target, got)
			}
			return
		}
		// A fragment never reaches a server; the resolver ignores one.
		path, _, _ := strings.Cut(target, "#")
		req, ok := readTarget(method, path)
		if !ok {
			return
		}
		if want := env.servedTemplate(req); got != want {
			t.Fatalf("API(%q, %q) = %q, but a request %s %s is routed to %q",
				method, target, got, method, path, want)
		}
	})
}

func FuzzResolveUI(f *testing.F) {
	env := fuzzSetup(f)
	resolver := env.srv.resolver(env.srv.engine.Current())
	f.Fuzz(func(t *testing.T, target string) {
		got := resolver.UI(target)
		if got != "" && !env.pages[got] {
			t.Fatalf("UI(%q) = %q, which the policy does not declare", target, got)
		}
		if !strings.HasPrefix(target, "/") {
			if got != "" {
				t.Fatalf("UI(%q) = %q for a target not in origin form", target, got)
			}
			return
		}
		path, _, _ := strings.Cut(target, "#")
		req, ok := readTarget(http.MethodGet, path)
		if !ok {
			return
		}
		rec := httptest.NewRecorder()
		env.uiRef.ServeHTTP(rec, req)
		want := ""
		if rec.Code == http.StatusOK {
			want = rec.Body.String()
		}
		if got != want {
			t.Fatalf("UI(%q) = %q, but Echo routes GET %s to %q", target, got, path, want)
		}
	})
}

func FuzzParseChecks(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		checks, batch, err := parseChecks(body)
		if err != nil {
			var e *apiError
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest ||
				(e.Reason != reasonInvalidRequest && e.Reason != reasonBatchTooLarge) {
				t.Fatalf("parseChecks(%q) error %v, want a 400 invalid_request or batch_too_large", body, err)
			}
			return
		}
		if len(checks) == 0 || len(checks) > MaxBatch || (!batch && len(checks) != 1) {
			t.Fatalf("parseChecks(%q) = %d checks (batch %v)", body, len(checks), batch)
		}
		for i, c := range checks {
			if problem := invalidCheck(c); problem != "" {
				t.Fatalf("parseChecks(%q): check %d %+v accepted, but %s", body, i, c, problem)
			}
		}

		// What was accepted means the same when sent again.
		var again []byte
		if batch {
			again, _ = json.Marshal(map[string]any{"checks": checks})
		} else {
			again, _ = json.Marshal(checks[0])
		}
		checks2, batch2, err := parseChecks(again)
		if err != nil || batch2 != batch || len(checks2) != len(checks) {
			t.Fatalf("re-sent %s: %v (batch %v, %d checks)", again, err, batch2, len(checks2))
		}
		for i := range checks {
			if checks[i] != checks2[i] {
				t.Fatalf("re-sent check %d: %+v, first read %+v", i, checks2[i], checks[i])
			}
		}
	})
}

// invalidCheck says what is wrong with an accepted check, or "".
func invalidCheck(c checkRequest) string {
	for _, s := range []string{c.Kind, c.Method, c.Path, c.Type, c.Action, c.ID, c.Name} {
		if len(s) > MaxPathLen {
			return "a member is over MaxPathLen"
		}
	}
	switch c.Kind {
	case decision.KindAPI:
		if !validMethod(c.Method) || c.Method == "" || !strings.HasPrefix(c.Path, "/") {
			return "an api check needs an upper-case method and an absolute path"
		}
		if c.Type+c.Action+c.ID+c.Name != "" {
			return "an api check carries resource or feature members"
		}
	case decision.KindUI:
		if !strings.HasPrefix(c.Path, "/") {
			return "a ui check needs an absolute path"
		}
		if c.Method+c.Type+c.Action+c.ID+c.Name != "" {
			return "a ui check carries other members"
		}
	case decision.KindResource:
		if c.Type == "" || c.Action == "" {
			return "a resource check needs a type and an action"
		}
		if c.Method+c.Path+c.Name != "" {
			return "a resource check carries other members"
		}
	case decision.KindFeature:
		if c.Name == "" {
			return "a feature check needs a name"
		}
		if c.Method+c.Path+c.Type+c.Action+c.ID != "" {
			return "a feature check carries other members"
		}
	default:
		return "its kind is unknown"
	}
	return ""
}

// FuzzAuthZEN sends each body to both evaluation endpoints of the real
// Echo instance, as a trusted PEP: the decoder and everything behind it
// either answer 200 with well-formed decisions or refuse with a 400-class
// problem, never a 5xx (a panic would be one, through Recover).
func FuzzAuthZEN(f *testing.F) {
	env := fuzzSetup(f)
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		path := "/access/v1/evaluation"
		if batch {
			path = "/access/v1/evaluations"
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+env.pepToken)
		rec := httptest.NewRecorder()
		env.srv.echo.ServeHTTP(rec, req)

		switch {
		case rec.Code == http.StatusOK:
			checkAuthZENAnswer(t, body, rec.Body.Bytes())
		case rec.Code >= 400 && rec.Code < 500:
			var p problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Reason == "" ||
				rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("POST %s %q = %d %s, want a problem with a reason", path, body, rec.Code, rec.Body)
			}
			if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden {
				t.Fatalf("POST %s %q = %d %s: the PEP's own token was refused", path, body, rec.Code, rec.Body)
			}
		default:
			t.Fatalf("POST %s %q = %d %s, want 200 or a 400-class problem", path, body, rec.Code, rec.Body)
		}
	})
}

func checkAuthZENAnswer(t *testing.T, body, answer []byte) {
	t.Helper()
	type fuzzContext struct {
		Reason     string `json:"reason"`
		DecisionID string `json:"decision_id"`
	}
	var out struct {
		Decision    *bool        `json:"decision"`
		Context     *fuzzContext `json:"context"`
		Evaluations []struct {
			Decision *bool        `json:"decision"`
			Context  *fuzzContext `json:"context"`
		} `json:"evaluations"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatalf("%q: answer %s is not JSON: %v", body, answer, err)
	}
	type one struct {
		decision *bool
		ctx      *fuzzContext
	}
	var all []one
	if out.Decision != nil {
		all = append(all, one{out.Decision, out.Context})
	}
	for _, e := range out.Evaluations {
		all = append(all, one{e.Decision, e.Context})
	}
	if len(all) == 0 || len(all) > MaxBatch {
		t.Fatalf("%q: answer %s holds %d decisions", body, answer, len(all))
	}
	for _, a := range all {
		if a.decision == nil || a.ctx == nil || a.ctx.Reason == "" || a.ctx.DecisionID == "" {
			t.Fatalf("%q: answer %s has a decision without a reason or id", body, answer)
		}
		if *a.decision != (a.ctx.Reason == decision.ReasonAllowed) {
			t.Fatalf("%q: answer %s: decision %v with reason %q", body, answer, *a.decision, a.ctx.Reason)
		}
	}
}
