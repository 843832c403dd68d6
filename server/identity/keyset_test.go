package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// flood verifies tokens concurrently and returns how many failed with want.
func flood(tb testing.TB, v *Verifier, tokens []string, want string) {
	tb.Helper()
	var wrong atomic.Int64
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Go(func() {
			for tok := range work {
				if _, err := v.Verify(context.Background(), tok, ""); reasonOf(err) != want {
					wrong.Add(1)
				}
			}
		})
	}
	for _, tok := range tokens {
		work <- tok
	}
	close(work)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		tb.Fatalf("%d of %d flood tokens did not fail with %q", n, len(tokens), want)
	}
}

func TestRefetchBoundUnderFlood(t *testing.T) {
	f := newOktaFixture(t, nil)
	iss := f.okta.URL
	claims := oktaAccessClaims(iss, f.clock.Now())
	fetches := func() int64 { return f.v.KeyFetches(iss) }
	if got := fetches(); got != 1 {
		t.Fatalf("KeyFetches after start = %d, want 1", got)
	}

	unknownKids := make([]string, 200)
	for i := range unknownKids {
		k := testKey{kid: fmt.Sprintf("rotated-%d", i), alg: "RS256", priv: f.otherK.priv}
		unknownKids[i] = sign(t, k, nil, claims)
	}
	badSigs := make([]string, 200)
	for i := range badSigs {
		k := testKey{kid: f.rsa.kid, alg: "RS256", priv: f.otherK.priv}
		badSigs[i] = sign(t, k, nil, with(claims, "jti", fmt.Sprint(i)))
	}

	tests := []struct {
		name    string
		advance time.Duration
		tokens  []string
		want    string
		fetches int64
	}{
		{"unknown kids within the cooldown", 0, unknownKids, ReasonTokenUnknownKey, 1},
		{"unknown kids after the cooldown", 31 * time.Second, unknownKids, ReasonTokenUnknownKey, 2},
		{"unknown kids, cooldown not over", 20 * time.Second, unknownKids, ReasonTokenUnknownKey, 2},
		{"bad signatures within the cooldown", 0, badSigs, ReasonTokenSignature, 2},
		{"bad signatures after the cooldown", 31 * time.Second, badSigs, ReasonTokenSignature, 3},
	}
	for _, tt := range tests {
		f.clock.Advance(tt.advance)
		flood(t, f.v, tt.tokens, tt.want)
		if got := fetches(); got != tt.fetches {
			t.Errorf("%s: KeyFetches = %d, want %d", tt.name, got, tt.fetches)
		}
	}
	if got := f.okta.jwksHits.Load(); got != fetches() {
		t.Errorf("JWKS served %d times, KeyFetches says %d", got, fetches())
	}
	if got := f.v.KeyFetches(f.other.URL); got != 1 {
		t.Errorf("other issuer's KeyFetches = %d, want 1: a flood must not touch it", got)
	}
}

func TestKeyRotation(t *testing.T) {
	clock := newFakeClock()
	k1, k2 := newRSAKey(t, 0, "k1"), newRSAKey(t, 1, "k2")
	ti := newTestIssuer(t, "/oauth2/default", k1)
	cfg := IssuerConfig{Issuer: ti.URL, Audience: oktaAudience}
	v := startVerifier(t, []IssuerConfig{cfg}, Options{
		Now: clock.Now, RefreshInterval: 10 * time.Millisecond,
	})
	var changes atomic.Int64
	v.OnKeysChanged(func(iss string) {
		if iss == ti.URL {
			changes.Add(1)
		}
	})
	waitReady(t, v)

	verify := func(step string, k testKey, want string) {
		t.Helper()
		tok := sign(t, k, nil, oktaAccessClaims(ti.URL, clock.Now()))
		if _, err := v.Verify(context.Background(), tok, ""); reasonOf(err) != want {
			t.Fatalf("%s: Verify(token by %s) = %q, want %q", step, k.kid, reasonOf(err), want)
		}
	}

	verify("before rotation", k1, "")
	ti.setKeys(k1, k2)
	verify("new key published, cooldown not over", k2, ReasonTokenUnknownKey)
	clock.Advance(31 * time.Second)
	verify("new key after the cooldown", k2, "")
	verify("old key still published", k1, "")

	ti.setKeys(k2)
	verify("old key removed, not refreshed yet", k1, "")
	before := v.KeyFetches(ti.URL)
	clock.Advance(31 * time.Second)
	waitFor(t, "periodic refresh", func() bool { return v.KeyFetches(ti.URL) > before })
	verify("old key after the refresh", k1, ReasonTokenUnknownKey)
	verify("new key after the refresh", k2, "")

	if got := changes.Load(); got != 2 {
		t.Errorf("OnKeysChanged called %d times, want 2 (added, removed)", got)
	}
}

// syncBuffer is a log sink safe for the verifier's goroutines.
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

func statusOfIssuer(v *Verifier, iss string) IssuerStatus {
	for _, s := range v.Status() {
		if s.Issuer == iss {
			return s
		}
	}
	return IssuerStatus{}
}

func TestJWKSOutage(t *testing.T) {
	clock := newFakeClock()
	k1 := newRSAKey(t, 0, "k1")
	ti := newTestIssuer(t, "/oauth2/default", k1)
	var logs syncBuffer
	cfg := IssuerConfig{Issuer: ti.URL, Audience: oktaAudience, MaxKeyAge: time.Hour}
	v := startVerifier(t, []IssuerConfig{cfg}, Options{
		Now: clock.Now, RefreshInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	waitReady(t, v)
	var changes atomic.Int64
	v.OnKeysChanged(func(string) { changes.Add(1) })

	verify := func(step, want string) {
		t.Helper()
		tok := sign(t, k1, nil, oktaAccessClaims(ti.URL, clock.Now()))
		_, err := v.Verify(context.Background(), tok, "")
		if reasonOf(err) != want {
			t.Fatalf("%s: Verify = %q, want %q", step, reasonOf(err), want)
		}
		if strings.Contains(logs.String(), tok[:40]) {
			t.Fatalf("%s: the log holds token text", step)
		}
	}
	detail := func(want string) func() bool {
		return func() bool { return statusOfIssuer(v, ti.URL).Detail == want }
	}

	ti.set(func(ti *testIssuer) { ti.failJWKS = true })
	clock.Advance(31 * time.Second)
	waitFor(t, "a failed refresh", detail("serving cached keys; key set refresh failing"))
	verify("outage, keys young", "")
	if !v.Ready() {
		t.Errorf("Ready() = false while serving cached keys, want true")
	}

	clock.Advance(time.Hour)
	verify("outage, keys older than MaxKeyAge", ReasonIssuerUnavailable)
	waitFor(t, "expired status", detail("keys older than max_key_age; key set unreachable"))
	if v.Ready() {
		t.Errorf("Ready() = true with expired keys, want false")
	}
	waitFor(t, "keys-changed callback on expiry", func() bool { return changes.Load() == 1 })

	ti.set(func(ti *testIssuer) { ti.failJWKS = false })
	clock.Advance(31 * time.Second)
	waitReady(t, v)
	verify("after the outage", "")
	for _, want := range []string{"level=WARN msg=\"jwks fetch failed, serving cached keys\"",
		"level=ERROR msg=\"issuer unavailable: keys older than max_key_age"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestIssuerUnavailable(t *testing.T) {
	k1 := newRSAKey(t, 0, "k1")
	tests := []struct {
		name   string
		break_ func(ti *testIssuer)
		detail string
		logs   string
	}{
		{"discovery names the issuer with a trailing slash",
			func(ti *testIssuer) { ti.discoveryIssuer = ti.URL + "/" },
			"discovery document names a different issuer; fix the configuration",
			"level=ERROR msg=\"issuer unusable: discovery document names a different issuer\""},
		{"discovery names another issuer",
			func(ti *testIssuer) { ti.discoveryIssuer = "https://evil.example" },
			"discovery document names a different issuer; fix the configuration", ""},
		{"discovery down",
			func(ti *testIssuer) { ti.failDiscovery = true },
			"discovery failed; retrying", "level=WARN msg=\"issuer discovery failed\""},
		{"jwks down from the start",
			func(ti *testIssuer) { ti.failJWKS = true },
			"fetching keys failed; retrying", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti := newTestIssuer(t, "/oauth2/default", k1)
			ti.set(tt.break_)
			var logs syncBuffer
			cfg := IssuerConfig{Issuer: ti.URL, Audience: oktaAudience}
			v := startVerifier(t, []IssuerConfig{cfg}, Options{
				RefreshInterval: 10 * time.Millisecond,
				Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
			})
			waitFor(t, "status "+tt.detail, func() bool {
				return statusOfIssuer(v, ti.URL).Detail == tt.detail
			})

			tok := sign(t, k1, nil, oktaAccessClaims(ti.URL, time.Now()))
			_, err := v.Verify(context.Background(), tok, "")
			if got := reasonOf(err); got != ReasonIssuerUnavailable {
				t.Fatalf("Verify = %q, want %q", got, ReasonIssuerUnavailable)
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
				t.Errorf("Verify error status = %v, want 503", err)
			}
			if v.Ready() {
				t.Errorf("Ready() = true, want false")
			}
			if !strings.Contains(logs.String(), tt.logs) {
				t.Errorf("log lacks %q:\n%s", tt.logs, logs.String())
			}
		})
	}
}

func TestUnreachableIssuerRecovers(t *testing.T) {
	k1 := newRSAKey(t, 0, "k1")
	ti := newTestIssuer(t, "/oauth2/default", k1)
	ti.set(func(ti *testIssuer) { ti.failDiscovery = true })
	cfg := IssuerConfig{Issuer: ti.URL, Audience: oktaAudience}
	v := startVerifier(t, []IssuerConfig{cfg}, Options{RefreshInterval: 10 * time.Millisecond})
	waitFor(t, "a failed discovery", func() bool {
		return statusOfIssuer(v, ti.URL).Detail == "discovery failed; retrying"
	})

	ti.set(func(ti *testIssuer) { ti.failDiscovery = false })
	waitReady(t, v)
	tok := sign(t, k1, nil, oktaAccessClaims(ti.URL, time.Now()))
	if _, err := v.Verify(context.Background(), tok, ""); err != nil {
		t.Fatalf("Verify after recovery = %v, want success", err)
	}
	s := statusOfIssuer(v, ti.URL)
	if !s.Ready || s.Detail != "ready" || s.KeysFetchedAt.IsZero() {
		t.Errorf("Status = %+v, want ready with a fetch time", s)
	}
}

func TestNotStarted(t *testing.T) {
	k1 := newRSAKey(t, 0, "k1")
	ti := newTestIssuer(t, "/oauth2/default", k1)
	v, err := NewVerifier([]IssuerConfig{{Issuer: ti.URL, Audience: oktaAudience}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, k1, nil, oktaAccessClaims(ti.URL, time.Now()))
	if _, err := v.Verify(context.Background(), tok, ""); reasonOf(err) != ReasonIssuerUnavailable {
		t.Errorf("Verify before Start = %q, want %q", reasonOf(err), ReasonIssuerUnavailable)
	}
	if got := statusOfIssuer(v, ti.URL).Detail; got != "waiting for discovery" {
		t.Errorf("Status detail before Start = %q", got)
	}
	if ti.jwksHits.Load() != 0 {
		t.Errorf("NewVerifier did network I/O")
	}
}

func TestParseJWKS(t *testing.T) {
	rsaKey := newRSAKey(t, 0, "r")
	pub := mustJSON(t, rsaKey.jwk())
	set := func(key string) string { return `{"keys":[` + key + `]}` }
	private := mustJSON(t, jose.JSONWebKey{Key: rsaKey.priv, KeyID: "p", Algorithm: "RS256"})
	tests := []struct {
		name string
		body string
		want int // usable keys; -1 for an error
	}{
		{"one key", `{"keys":[` + pub + `]}`, 1},
		{"symmetric key skipped", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},` + pub + `]}`, 1},
		{"only symmetric", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`, -1},
		{"encryption key skipped", set(strings.Replace(pub, `"use":"sig"`, `"use":"enc"`, 1)), -1},
		{"unknown kty skipped", `{"keys":[{"kty":"XYZ"},` + pub + `]}`, 1},
		{"HS256 alg skipped", set(strings.Replace(pub, `"alg":"RS256"`, `"alg":"HS256"`, 1)), -1},
		{"private key published by mistake", `{"keys":[` + private + `]}`, 1},
		{"empty", `{"keys":[]}`, -1},
		{"not JSON", `<html>`, -1},
	}
	for _, tt := range tests {
		keys, err := parseJWKS([]byte(tt.body))
		for _, k := range keys {
			if !k.IsPublic() {
				t.Errorf("parseJWKS(%s) kept a private key", tt.name)
			}
		}
		got := len(keys)
		if err != nil {
			got = -1
		}
		if got != tt.want {
			t.Errorf("parseJWKS(%s) = %d keys (err %v), want %d", tt.name, got, err, tt.want)
		}
	}
}
