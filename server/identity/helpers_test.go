package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testKey is a signing key made in the test, with the kid and alg it is
// published under.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

// RSA keys are slow to make; the tests share a few, made once per run.
var (
	rsaKeysOnce sync.Once
	rsaKeys     []*rsa.PrivateKey
)

// newRSAKey returns the i-th shared RSA key (i < 4) under kid.
func newRSAKey(tb testing.TB, i int, kid string) testKey {
	tb.Helper()
	rsaKeysOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
		}
	})
	return testKey{kid: kid, alg: "RS256", priv: rsaKeys[i]}
}

func newECKey(tb testing.TB, kid string) testKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("ecdsa.GenerateKey: %v", err)
	}
	return testKey{kid: kid, alg: "ES256", priv: k}
}

// jwk is the public JWK of k as an issuer publishes it.
func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// b64 is unpadded base64url.
func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json.Marshal: %v", err)
	}
	return string(data)
}

// signRaw signs header and payload (raw JSON texts) with priv under alg,
// by hand, so that tests can make tokens no library would: duplicate
// claims, alg none, HS256 keyed with a public key.
func signRaw(tb testing.TB, alg string, priv any, header, payload string) string {
	tb.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	digest := sha256.Sum256([]byte(input))

	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, digest[:], nil)
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), digest[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case "HS256":
		mac := hmac.New(sha256.New, priv.([]byte))
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	case "none":
		sig = nil
	default:
		tb.Fatalf("signRaw: unsupported alg %q", alg)
	}
	if err != nil {
		tb.Fatalf("signing %s: %v", alg, err)
	}
	return input + "." + b64(sig)
}

// sign makes a token with k: header {"kid","alg"} (Okta's: no typ) plus
// extra header members, and claims.
func sign(tb testing.TB, k testKey, extraHeader, claims map[string]any) string {
	tb.Helper()
	header := map[string]any{"kid": k.kid, "alg": k.alg}
	for name, v := range extraHeader {
		if v == nil {
			delete(header, name)
			continue
		}
		header[name] = v
	}
	alg, _ := header["alg"].(string)
	return signRaw(tb, alg, k.priv, mustJSON(tb, header), mustJSON(tb, claims))
}

// H is a JOSE header, or header members to add.
type H = map[string]any

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now().Truncate(time.Second)}
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

// testIssuer is an OpenID issuer served by httptest on loopback: discovery
// and a JWKS the test can change, break and count.
type testIssuer struct {
	srv  *httptest.Server
	URL  string // the issuer URL: server URL plus path
	path string

	mu              sync.Mutex
	keys            []jose.JSONWebKey
	discoveryIssuer string // what discovery claims; URL unless set
	failDiscovery   bool
	failJWKS        bool

	jwksHits atomic.Int64
}

// newTestIssuer starts an issuer at path (e.g. "/oauth2/default")
// publishing keys.
func newTestIssuer(tb testing.TB, path string, keys ...testKey) *testIssuer {
	tb.Helper()
	ti := &testIssuer{path: path}
	ti.srv = httptest.NewServer(http.HandlerFunc(ti.serve))
	tb.Cleanup(ti.srv.Close)
	ti.URL = ti.srv.URL + path
	ti.setKeys(keys...)
	return ti
}

func (ti *testIssuer) setKeys(keys ...testKey) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = nil
	for _, k := range keys {
		ti.keys = append(ti.keys, k.jwk())
	}
}

func (ti *testIssuer) set(f func(ti *testIssuer)) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	f(ti)
}

func (ti *testIssuer) serve(w http.ResponseWriter, r *http.Request) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")

	switch r.URL.Path {
	case ti.path + "/.well-known/openid-configuration":
		if ti.failDiscovery {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		iss := ti.URL
		if ti.discoveryIssuer != "" {
			iss = ti.discoveryIssuer
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              ti.URL + "/v1/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	case ti.path + "/v1/keys":
		ti.jwksHits.Add(1)
		if ti.failJWKS {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: ti.keys})
	default:
		http.NotFound(w, r)
	}
}

// startVerifier builds and starts a verifier, stopped at cleanup.
func startVerifier(tb testing.TB, cfgs []IssuerConfig, opts Options) *Verifier {
	tb.Helper()
	v, err := NewVerifier(cfgs, opts)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	v.Start(ctx)
	return v
}

// waitFor polls cond for up to five seconds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitReady(tb testing.TB, v *Verifier) {
	tb.Helper()
	waitFor(tb, "verifier ready", v.Ready)
}

// Okta-shaped values, from shared/okta-token-shapes.md.
const (
	oktaAudience = "api://default"
	oktaClient   = "0oa1b2c3d4SPAclient"
	oktaUID      = "00u1a2b3c4d5e6f7"
	oktaLogin    = "alex@example.com"
)

// oktaAccessClaims are an Okta access token's claims for iss at now.
func oktaAccessClaims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"ver": 1, "jti": "AT.x1y2z3", "iss": iss, "aud": oktaAudience,
		"sub": oktaLogin, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"cid": oktaClient, "uid": oktaUID,
		"scp":       []string{"openid", "profile", "email", "groups"},
		"auth_time": now.Add(-10 * time.Minute).Unix(),
		"groups":    []string{"Everyone", "tier-plus"},
		"tier":      "plus",
	}
}

// oktaIDClaims are the matching Okta ID token's claims.
func oktaIDClaims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"ver": 1, "jti": "ID.a1b2c3", "iss": iss, "aud": oktaClient,
		"sub": oktaUID, "name": "Alex Example", "email": oktaLogin,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"amr": []string{"pwd"}, "idp": "00o1idp", "preferred_username": oktaLogin,
		"auth_time": now.Add(-10 * time.Minute).Unix(),
		"at_hash":   "x4Tg2Yd7p3Zt0aQ", "nonce": "n-0S6_WzA2Mj",
	}
}

// with returns a copy of m with the given members set; a nil value
// deletes the member.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		name := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, name)
			continue
		}
		out[name] = kv[i+1]
	}
	return out
}

// reasonOf is the reason of err, "" for nil, and "not an *Error" for
// anything else.
func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	if r := ReasonOf(err); r != "" {
		return r
	}
	return "not an *Error: " + err.Error()
}
