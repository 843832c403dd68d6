package server_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// faultAudience is the API audience of faultIssuer's tokens.
const faultAudience = "api://faults"

// faultKey is an ES256 signing key made in the test, and its kid.
type faultKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newFaultKey(t testing.TB, kid string) faultKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return faultKey{kid: kid, priv: k}
}

// faultIssuer is an OpenID issuer on loopback whose JWKS the test can
// break, mend and rotate, in the manner of identity's testIssuer.
type faultIssuer struct {
	url string

	mu       sync.Mutex
	keys     []faultKey
	jwksDown bool
	hits     atomic.Int64
}

func newFaultIssuer(t testing.TB, keys ...faultKey) *faultIssuer {
	t.Helper()
	fi := &faultIssuer{keys: keys}
	srv := httptest.NewServer(http.HandlerFunc(fi.serve))
	t.Cleanup(srv.Close)
	fi.url = srv.URL + "/oauth2/faults"
	return fi
}

func (fi *faultIssuer) config() identity.IssuerConfig {
	return identity.IssuerConfig{Issuer: fi.url, Audience: faultAudience}
}

func (fi *faultIssuer) publish(keys ...faultKey) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.keys = keys
}

func (fi *faultIssuer) setJWKSDown(down bool) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.jwksDown = down
}

func (fi *faultIssuer) serve(w http.ResponseWriter, r *http.Request) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch strings.TrimPrefix(r.URL.Path, "/oauth2/faults") {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": fi.url, "jwks_uri": fi.url + "/v1/keys",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	case "/v1/keys":
		fi.hits.Add(1)
		if fi.jwksDown {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		set := jose.JSONWebKeySet{}
		for _, k := range fi.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid,
				Algorithm: "ES256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	default:
		http.NotFound(w, r)
	}
}

// token signs an access token of tier with k, issued at now.
func (fi *faultIssuer) token(t testing.TB, k faultKey, tier string, now time.Time) string {
	t.Helper()
	claims := map[string]any{
		"iss": fi.url, "aud": faultAudience, "sub": tier + "@faults.example",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "cid": "faults-spa", "tier": tier,
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]any{"alg": "ES256", "kid": k.kid}) + "." + enc(claims)
	digest := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, k.priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]byte, 64) // ES256 is r||s, not ASN.1
	r.FillBytes(rs[:32])
	sv.FillBytes(rs[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(rs)
}

// issuerStatus is the verifier's readiness for iss.
func issuerStatus(s *service, iss string) identity.IssuerStatus {
	for _, st := range s.verifier.Status() {
		if st.Issuer == iss {
			return st
		}
	}
	return identity.IssuerStatus{}
}

// eventually polls cond for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An issuer whose JWKS is down at start leaves the service up but not
// ready, its tokens at 503 issuer_unavailable with Retry-After, and a log
// line naming the issuer; other issuers and anonymous requests are
// served; once the JWKS answers, its tokens verify without a restart.
func TestJWKSDownAtStart(t *testing.T) {
	key := newFaultKey(t, "k1")
	fi := newFaultIssuer(t, key)
	fi.setJWKSDown(true)
	s := startService(t, server.Config{}, withIssuer(fi.config()),
		withVerifierOptions(identity.Options{RefetchCooldown: 100 * time.Millisecond}))

	eventually(t, 5*time.Second, "a jwks fetch to fail", func() bool { return fi.hits.Load() > 0 })
	eventually(t, 5*time.Second, "the failure in the log", func() bool {
		return strings.Contains(s.logs.String(), `"msg":"jwks fetch failed","iss":"`+fi.url+`"`)
	})

	token := fi.token(t, key, "plus", time.Now())
	r := s.do(t, "GET", "/api/treasure-map", token, nil)
	if r.status != 503 || r.body["reason"] != "issuer_unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("token of an issuer without keys = %d %v %s, want 503 issuer_unavailable with Retry-After",
			r.status, r.header, r.raw)
	}
	if strings.Contains(r.raw, "X marks") {
		t.Error("protected data served while the issuer had no keys")
	}
	r = s.do(t, "POST", "/authz/check", token, map[string]any{"kind": "ui", "path": "/"})
	if r.status != 503 || r.body["reason"] != "issuer_unavailable" {
		t.Errorf("/authz/check with that token = %d %s, want 503 issuer_unavailable", r.status, r.raw)
	}
	r = s.do(t, "GET", "/health/ready", "", nil)
	if r.status != 503 || !strings.Contains(r.raw, fi.url) {
		t.Errorf("/health/ready = %d %s, want 503 naming %s", r.status, r.raw, fi.url)
	}
	if r := s.do(t, "GET", "/health/live", "", nil); r.status != 200 {
		t.Errorf("/health/live = %d, want 200: the process is alive", r.status)
	}
	if r := s.do(t, "GET", "/api/treasure-map", s.token(t, "plus"), nil); r.status != 200 {
		t.Errorf("a dev-issuer token while another issuer is down = %d, want 200", r.status)
	}

	fi.setJWKSDown(false)
	eventually(t, 10*time.Second, "the issuer's tokens to verify once its JWKS is back", func() bool {
		return s.do(t, "GET", "/api/treasure-map", token, nil).status == 200
	})
	eventually(t, 10*time.Second, "readiness", func() bool {
		return s.do(t, "GET", "/health/ready", "", nil).status == 200
	})
	assertNoSecrets(t, s.logs.String(), token)
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A JWKS that goes down mid-run: the keys already fetched keep verifying
// for MaxKeyAge (an hour by default), a kid they lack fails closed (401
// token_unknown_key), and past MaxKeyAge the issuer is unavailable (503);
// when the JWKS answers again, so does the issuer.
func TestJWKSDownMidRun(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	a, b := newFaultKey(t, "a"), newFaultKey(t, "b")
	fi := newFaultIssuer(t, a)
	s := startService(t, server.Config{}, withIssuer(fi.config()),
		withVerifierOptions(identity.Options{Now: clock.Now, RefetchCooldown: time.Second}))
	eventually(t, 10*time.Second, "the issuer's keys", func() bool { return issuerStatus(s, fi.url).Ready })

	get := func(token string) response { return s.do(t, "GET", "/api/treasure-map", token, nil) }
	if r := get(fi.token(t, a, "plus", clock.Now())); r.status != 200 {
		t.Fatalf("before the outage: %d %s", r.status, r.raw)
	}

	fi.setJWKSDown(true)
	clock.Advance(30 * time.Minute)
	if r := get(fi.token(t, a, "plus", clock.Now())); r.status != 200 {
		t.Errorf("known key, JWKS down, keys 30 min old = %d %s, want 200", r.status, r.raw)
	}
	if r := get(fi.token(t, a, "free", clock.Now())); r.status != 403 {
		t.Errorf("known key, free tier, JWKS down = %d %s, want 403", r.status, r.raw)
	}
	fetches := fi.hits.Load()
	r := get(fi.token(t, b, "plus", clock.Now()))
	if r.status != 401 || r.body["reason"] != "token_unknown_key" {
		t.Errorf("unknown kid while the JWKS is down = %d %s, want 401 token_unknown_key", r.status, r.raw)
	}
	if fi.hits.Load() != fetches+1 {
		t.Errorf("an unknown kid made %d JWKS fetches, want 1", fi.hits.Load()-fetches)
	}
	for range 5 {
		get(fi.token(t, b, "plus", clock.Now()))
	}
	if fi.hits.Load() != fetches+1 {
		t.Errorf("more unknown kids within the cooldown fetched the JWKS again (%d fetches)",
			fi.hits.Load()-fetches)
	}
	if st := issuerStatus(s, fi.url); !st.Ready || !strings.Contains(st.Detail, "cached") {
		t.Errorf("status during the outage = %+v, want ready on cached keys", st)
	}
	if !strings.Contains(s.logs.String(), `"msg":"jwks fetch failed, serving cached keys"`) {
		t.Error("no warning that cached keys are being served")
	}

	clock.Advance(31 * time.Minute) // the keys are now 61 minutes old
	r = get(fi.token(t, a, "plus", clock.Now()))
	if r.status != 503 || r.body["reason"] != "issuer_unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("known key past MaxKeyAge = %d %s, want 503 issuer_unavailable", r.status, r.raw)
	}

	fi.setJWKSDown(false)
	clock.Advance(2 * time.Second) // past the cooldown
	if r := get(fi.token(t, a, "plus", clock.Now())); r.status != 200 {
		t.Errorf("after the JWKS came back = %d %s, want 200", r.status, r.raw)
	}
}

// Key rotation under traffic: clients keep calling while the issuer
// publishes a new key, signs with it, withdraws the old one, and then
// switches keys abruptly. No request gets a 5xx; every answer is the
// policy's (200 plus, 403 free) or, in the instant a kid is unknown, a
// 401 token_unknown_key. The old key stops verifying after the refetch an
// unknown kid triggers.
func TestKeyRotationUnderTraffic(t *testing.T) {
	a, b, c := newFaultKey(t, "a"), newFaultKey(t, "b"), newFaultKey(t, "c")
	fi := newFaultIssuer(t, a)
	s := startService(t, server.Config{}, withIssuer(fi.config()),
		withVerifierOptions(identity.Options{RefetchCooldown: 50 * time.Millisecond}))
	eventually(t, 10*time.Second, "the issuer's keys", func() bool { return issuerStatus(s, fi.url).Ready })

	type signer struct {
		key          faultKey
		plus, free   string
		plusW, freeW int
	}
	mint := func(k faultKey) *signer {
		return &signer{key: k, plus: fi.token(t, k, "plus", time.Now()), free: fi.token(t, k, "free", time.Now())}
	}
	var current atomic.Pointer[signer]
	current.Store(mint(a))

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		counts   = map[string]int{}
		failures []string
	)
	client := loadClient
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				sg := current.Load()
				token, want := sg.plus, 200
				if (i+w)%3 == 0 {
					token, want = sg.free, 403
				}
				req, _ := http.NewRequest("GET", s.base+"/api/treasure-map", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				key := fmt.Sprintf("%s %d", sg.key.kid, resp.StatusCode)
				ok := resp.StatusCode == want ||
					(resp.StatusCode == 401 && strings.Contains(string(body), "token_unknown_key"))
				mu.Lock()
				counts[key]++
				if !ok {
					failures = append(failures, fmt.Sprintf("kid %s: want %d, got %d %s",
						sg.key.kid, want, resp.StatusCode, body))
				}
				mu.Unlock()
			}
		}()
	}

	step := func(d time.Duration, f func()) { time.Sleep(d); f() }
	step(300*time.Millisecond, func() { fi.publish(a, b) })       // announce b
	step(300*time.Millisecond, func() { current.Store(mint(b)) }) // sign with b
	step(300*time.Millisecond, func() { fi.publish(b) })          // withdraw a
	step(300*time.Millisecond, func() { fi.publish(c); current.Store(mint(c)) })
	step(500*time.Millisecond, func() { stop.Store(true) })
	wg.Wait()

	t.Logf("answers by kid and status: %v", counts)
	if len(failures) > 0 {
		t.Errorf("%d answers outside the expected set; first:\n%s", len(failures),
			strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	if counts["c 200"] == 0 || counts["b 200"] == 0 {
		t.Errorf("traffic never verified on the new keys: %v", counts)
	}

	old := fi.token(t, a, "plus", time.Now())
	if r := s.do(t, "GET", "/api/treasure-map", old, nil); r.status != 401 || r.body["reason"] != "token_unknown_key" {
		t.Errorf("a token of the withdrawn key = %d %s, want 401 token_unknown_key", r.status, r.raw)
	}
	if r := s.do(t, "GET", "/api/treasure-map", fi.token(t, c, "plus", time.Now()), nil); r.status != 200 {
		t.Errorf("a token of the current key = %d %s, want 200", r.status, r.raw)
	}
}

// tryDo is a request that reports a failure instead of ending the test,
// for goroutines.
func tryDo(base, method, path, token string, body any) (int, http.Header, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, http.Header{}, "", err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, http.Header{}, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := loadClient.Do(req)
	if err != nil {
		return 0, http.Header{}, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw), err
}

// loadClient keeps its connections, so that concurrent clients reuse a
// few rather than leave thousands in TIME_WAIT on a busy machine.
var loadClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
}}

// copyPolicies copies the repository's policy tree (Rego, data, tests) to
// a fresh directory.
func copyPolicies(t testing.TB) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "policies")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if ext := filepath.Ext(path); ext != ".rego" && ext != ".json" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeAtomic replaces path as deploy tools do: write beside, rename over.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A policy pushed to a watched directory under traffic: one that does not
// compile and one that compiles but fails its own tests (it would hand
// the treasure map to free users) are refused while the old revision keeps
// answering every request correctly; a good one then swaps in, and no
// request fails across the three pushes.
func TestBrokenPolicyPushedUnderTraffic(t *testing.T) {
	dir := copyPolicies(t)
	p, err := decision.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := startService(t, server.Config{}, withPolicy(p))
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- decision.WatchDir(ctx, s.engine, dir, slog.New(slog.NewJSONHandler(s.logs, nil)))
	}()
	t.Cleanup(func() { cancel(); <-watchDone })
	original := s.engine.Current().ID
	free, plus := s.token(t, "free"), s.token(t, "plus")

	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		requests  atomic.Int64
		mu        sync.Mutex
		failures  []string
		revisions = map[string]int{}
	)
	type call struct {
		token, method, path string
		body                any
		status              int
		want                string
	}
	calls := []call{
		{plus, "GET", "/api/treasure-map", nil, 200, "X marks the spot"},
		{free, "GET", "/api/treasure-map", nil, 403, `"required_tier":"plus"`},
		{free, "POST", "/authz/check", map[string]any{"kind": "ui", "path": "/protected-content"}, 200,
			`"allow":false`},
		{plus, "POST", "/authz/check", map[string]any{"kind": "api", "method": "GET", "path": "/api/treasure-map"},
			200, `"allow":true`},
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i++ {
				c := calls[i%len(calls)]
				status, header, raw, err := tryDo(s.base, c.method, c.path, c.token, c.body)
				requests.Add(1)
				mu.Lock()
				revisions[header.Get("Tierguard-Revision")]++
				if err != nil || status != c.status || !strings.Contains(raw, c.want) {
					failures = append(failures, fmt.Sprintf("%s %s: %d %s %v", c.method, c.path, status, raw, err))
				}
				mu.Unlock()
			}
		}()
	}

	// The traffic stops before any failure below ends the test.
	halt := func() { stop.Store(true); wg.Wait() }
	defer halt()

	rego := filepath.Join(dir, "tierguard", "authz", "authz.rego")
	data := filepath.Join(dir, "tierguard", "data.json")
	goodRego, _ := os.ReadFile(rego)
	goodData, _ := os.ReadFile(data)
	refusals := func() uint64 { return s.engine.Status().Failures }

	// 1. Rego that does not parse.
	writeAtomic(t, rego, append(append([]byte(nil), goodRego...), []byte("\nallow if {\n")...))
	eventually(t, 30*time.Second, "the broken Rego refused", func() bool { return refusals() >= 1 })
	if got := s.engine.Current().ID; got != original {
		t.Errorf("after broken Rego the revision is %s, want %s still", got, original)
	}

	// 2. Rego restored, data that compiles but fails the policy's tests.
	writeAtomic(t, rego, goodRego)
	writeAtomic(t, data, []byte(strings.Replace(string(goodData),
		`"/api/treasure-map": {"tier": "plus"}`, `"/api/treasure-map": {"tier": "free"}`, 1)))
	eventually(t, 30*time.Second, "the failing policy refused", func() bool { return refusals() >= 2 })
	if got := s.engine.Current().ID; got != original {
		t.Errorf("after a policy failing its tests the revision is %s, want %s still", got, original)
	}
	if r := s.do(t, "GET", "/api/treasure-map", free, nil); r.status != 403 {
		t.Errorf("free GET /api/treasure-map after the refused push = %d, want 403", r.status)
	}

	// 3. A good change: a new feature, with its test.
	tests := filepath.Join(dir, "tierguard", "authz", "authz_test.rego")
	goodTests, _ := os.ReadFile(tests)
	early := `"early_access": ["unauthenticated:pro", "tier_required:pro", "tier_required:pro", "allowed"],`
	sparkles := `"sparkles": ["unauthenticated:plus", "tier_required:plus", "allowed", "allowed"],`
	if !strings.Contains(string(goodTests), early) {
		t.Fatalf("%s no longer lists early_access as this test expects", tests)
	}
	writeAtomic(t, tests, []byte(strings.Replace(string(goodTests), early, early+"\n\t"+sparkles, 1)))
	writeAtomic(t, data, []byte(strings.Replace(string(goodData),
		`"early_access": "pro"`, `"early_access": "pro", "sparkles": "plus"`, 1)))
	eventually(t, 30*time.Second, "the good policy to serve", func() bool {
		return s.engine.Current().ID != original
	})
	time.Sleep(200 * time.Millisecond) // some traffic on the new revision
	halt()
	if st := s.engine.Status(); st.LastError != "" {
		t.Errorf("the good policy left an error in the status: %s", st.LastError)
	}

	r := s.do(t, "POST", "/authz/check", free, map[string]any{"kind": "feature", "name": "sparkles"})
	if r.body["reason"] != "tier_required" || r.body["required_tier"] != "plus" {
		t.Errorf("the new feature on the new revision = %d %s", r.status, r.raw)
	}
	if r.header.Get("Tierguard-Revision") != s.engine.Current().ID {
		t.Errorf("Tierguard-Revision %q, want the new %q", r.header.Get("Tierguard-Revision"), s.engine.Current().ID)
	}
	t.Logf("%d requests across the pushes; revisions served: %v", requests.Load(), revisions)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed; first:\n%s", len(failures), requests.Load(),
			strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	if len(revisions) != 2 {
		t.Errorf("revisions served %v, want the original and the good one only", revisions)
	}
	if !strings.Contains(s.logs.String(), `"msg":"policy update refused"`) {
		t.Error("no log line for the refused policies")
	}
}

// A client that trickles its headers is cut off by ReadHeaderTimeout (5 s)
// while everyone else is served.
func TestSlowClientIsCutOff(t *testing.T) {
	t.Parallel()
	s := startService(t, server.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/news HTTP/1.1\r\nHost: x\r\n")

	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		// Read until the server gives up on us: EOF, a reset or a 408.
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case d := <-closed:
			if d < 4*time.Second || d > 8*time.Second {
				t.Errorf("the slow connection was closed after %v, want about 5s", d)
			}
			if r := s.do(t, "GET", "/health/live", "", nil); r.status != 200 {
				t.Errorf("/health/live after the slow client = %d", r.status)
			}
			return
		case <-tick.C:
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: a\r\n", i); err != nil {
				continue // the server has closed; the reader reports when
			}
			if r := s.do(t, "GET", "/api/news", "", nil); r.status != 200 {
				t.Errorf("another client while one trickles = %d", r.status)
			}
		}
	}
}

// Oversized and overlong requests each get their own clear error, and the
// service stays healthy after every one.
func TestLimits(t *testing.T) {
	s := startService(t, server.Config{})
	plus := s.token(t, "plus")
	live := func(after string) {
		t.Helper()
		if r := s.do(t, "GET", "/health/live", "", nil); r.status != 200 {
			t.Errorf("/health/live after %s = %d", after, r.status)
		}
	}

	// Headers over MaxHeaderBytes (64 KiB).
	r := s.rawDo(t, "GET", "/api/news", "X-Big", strings.Repeat("a", 100<<10))
	if r.status != 431 {
		t.Errorf("100 KiB of headers = %d %q, want 431", r.status, r.body)
	}
	live("huge headers")

	// A token over 16 KiB is refused unparsed.
	r2 := s.do(t, "GET", "/api/news", "", nil, "Authorization", "Bearer "+strings.Repeat("a", 17<<10)+".b.c")
	if r2.status != 400 || r2.body["reason"] != "invalid_request" {
		t.Errorf("a 17 KiB token = %d %s, want 400 invalid_request", r2.status, r2.raw)
	}
	live("a huge token")

	// Bodies over 64 KiB on /authz, with and without a Content-Length.
	big := `{"kind":"feature","name":"` + strings.Repeat("x", 70<<10) + `"}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(strings.NewReader(big)) // hides the length
		}
		req, _ := http.NewRequest("POST", s.base+"/authz/check", body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+plus)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(raw), `"reason":"body_too_large"`) {
			t.Errorf("a 70 KiB body (chunked %v) = %d %s, want 413 body_too_large",
				chunked, resp.StatusCode, raw)
		}
		live("a huge body")
	}
	for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations"} {
		r := s.do(t, "POST", path, plus, json.RawMessage(big))
		if r.status != 413 || r.body["reason"] != "body_too_large" {
			t.Errorf("a 70 KiB body on %s = %d %s, want 413 body_too_large", path, r.status, r.raw)
		}
	}

	// Too many checks in one batch.
	checks := make([]map[string]any, server.MaxBatch+1)
	for i := range checks {
		checks[i] = map[string]any{"kind": "feature", "name": "4k"}
	}
	r3 := s.do(t, "POST", "/authz/check", plus, map[string]any{"checks": checks})
	if r3.status != 400 || r3.body["reason"] != "batch_too_large" {
		t.Errorf("%d checks = %d %s, want 400 batch_too_large", len(checks), r3.status, r3.raw)
	}
	r3 = s.do(t, "POST", "/authz/check", plus, map[string]any{"checks": checks[:server.MaxBatch]})
	if r3.status != 200 {
		t.Errorf("%d checks = %d, want 200", server.MaxBatch, r3.status)
	}
	live("a huge batch")

	// A check path past the field limit names the field.
	r4 := s.do(t, "POST", "/authz/check", plus,
		map[string]any{"kind": "ui", "path": "/" + strings.Repeat("a", server.MaxPathLen)})
	if r4.status != 400 || r4.body["field"] != "path" {
		t.Errorf("a %d-byte check path = %d %s, want 400 on path", server.MaxPathLen+1, r4.status, r4.raw)
	}

	// A request that is not HTTP at all.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil && resp.StatusCode != 400 {
		t.Errorf("a TLS hello on the plain port = %d, want 400 or a closed connection", resp.StatusCode)
	}
	conn.Close()
	live("garbage on the wire")
	assertNoSecrets(t, s.logs.String(), plus)
}
