package identity

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// oktaFixture is an Okta-shaped issuer (path /oauth2/default, no typ,
// aud api://default, cid, uid, scp, groups) served on loopback, a second
// trusted issuer, and a verifier trusting both.
type oktaFixture struct {
	clock  *fakeClock
	okta   *testIssuer
	other  *testIssuer
	rsa    testKey // Okta's RS256 key, kid "okta-rsa-1"
	ec     testKey // a second, ES256 key of Okta's
	otherK testKey // the other issuer's key
	v      *Verifier
}

func newOktaFixture(tb testing.TB, mutate func(*IssuerConfig)) *oktaFixture {
	tb.Helper()
	f := &oktaFixture{
		clock:  newFakeClock(),
		rsa:    newRSAKey(tb, 0, "okta-rsa-1"),
		ec:     newECKey(tb, "okta-ec-1"),
		otherK: newRSAKey(tb, 1, "other-rsa-1"),
	}
	f.okta = newTestIssuer(tb, "/oauth2/default", f.rsa, f.ec)
	f.other = newTestIssuer(tb, "/other", f.otherK)

	oktaCfg := IssuerConfig{
		Issuer: f.okta.URL, Audience: oktaAudience, ClientIDs: []string{oktaClient},
	}
	if mutate != nil {
		mutate(&oktaCfg)
	}
	otherCfg := IssuerConfig{Issuer: f.other.URL, Audience: "api://other"}
	f.v = startVerifier(tb, []IssuerConfig{oktaCfg, otherCfg}, Options{Now: f.clock.Now})
	waitReady(tb, f.v)
	return f
}

func TestVerifyAccessToken(t *testing.T) {
	f := newOktaFixture(t, nil)
	now := f.clock.Now()
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	iss := f.okta.URL
	okta := oktaAccessClaims(iss, now)
	rfc9068 := map[string]any{
		"iss": iss, "aud": oktaAudience, "sub": "svc-1", "client_id": oktaClient,
		"scope": "read write", "iat": now.Unix(), "exp": at(5 * time.Minute),
		"jti": "j1",
	}
	rsaPriv := f.rsa.priv
	pubDER, err := x509.MarshalPKIXPublicKey(f.rsa.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	oktaJSON := mustJSON(t, okta)
	attacker := newRSAKey(t, 2, "attacker")
	ecJWK, _ := json.Marshal(attacker.jwk())
	var embedded map[string]any
	_ = json.Unmarshal(ecJWK, &embedded)

	// withPayload signs a raw payload text under Okta's RS256 key.
	withPayload := func(payload string) string {
		return signRaw(t, "RS256", rsaPriv, `{"kid":"okta-rsa-1","alg":"RS256"}`, payload)
	}
	withHeader := func(header string) string {
		return signRaw(t, "RS256", rsaPriv, header, oktaJSON)
	}
	flip := func(tok string) string {
		i := strings.LastIndexByte(tok, '.') + 5
		c := byte('A')
		if tok[i] == 'A' {
			c = 'B'
		}
		return tok[:i] + string(c) + tok[i+1:]
	}
	bigClaims := with(okta, "padding", strings.Repeat("x", MaxTokenSize))
	okt := func(kv ...any) string { return sign(t, f.rsa, nil, with(okta, kv...)) }
	edit := func(old, new string) string {
		return withPayload(strings.Replace(oktaJSON, old, new, 1))
	}
	hs256 := func(key []byte) string {
		return signRaw(t, "HS256", key, `{"kid":"okta-rsa-1","alg":"HS256"}`, oktaJSON)
	}
	rs256 := func(kid string, priv any) testKey {
		return testKey{kid: kid, alg: "RS256", priv: priv.(crypto.Signer)}
	}

	tests := []struct {
		name  string
		token string
		want  string // reason; "" for success
	}{
		{"okta RS256 no typ", sign(t, f.rsa, nil, okta), ""},
		{"okta ES256 key", sign(t, f.ec, nil, okta), ""},
		{"RFC 9068 at+jwt", sign(t, f.ec, H{"typ": "at+jwt"}, rfc9068), ""},
		{"typ application/at+jwt", sign(t, f.rsa, H{"typ": "application/at+jwt"}, rfc9068), ""},
		{"typ AT+JWT any case", sign(t, f.rsa, H{"typ": "AT+JWT"}, rfc9068), ""},
		{"typ JWT access shape", sign(t, f.rsa, H{"typ": "JWT"}, okta), ""},

		// Algorithms.
		{"alg none empty signature",
			signRaw(t, "none", nil, `{"alg":"none"}`, oktaJSON), ReasonTokenMalformed},
		{"alg none", withHeader(`{"kid":"okta-rsa-1","alg":"none"}`), ReasonTokenSignature},
		{"alg NONE", withHeader(`{"kid":"okta-rsa-1","alg":"NONE"}`), ReasonTokenSignature},
		{"alg None", withHeader(`{"kid":"okta-rsa-1","alg":"None"}`), ReasonTokenSignature},
		{"alg nOnE", withHeader(`{"kid":"okta-rsa-1","alg":"nOnE"}`), ReasonTokenSignature},
		{"HS256 keyed with the public key PEM", hs256(pubPEM), ReasonTokenSignature},
		{"HS256 keyed with the public key DER", hs256(pubDER), ReasonTokenSignature},
		{"PS256 not in the allowed list", signRaw(t, "PS256", rsaPriv,
			`{"kid":"okta-rsa-1","alg":"PS256"}`, oktaJSON), ReasonTokenSignature},
		{"alg not a string", withHeader(`{"kid":"okta-rsa-1","alg":1}`), ReasonTokenMalformed},

		// Keys.
		{"key embedded in the header (jwk)",
			sign(t, attacker, H{"jwk": embedded}, okta), ReasonTokenSignature},
		{"jku header",
			sign(t, attacker, H{"jku": "https://attacker.example/keys"}, okta), ReasonTokenSignature},
		{"x5u header",
			sign(t, attacker, H{"x5u": "https://attacker.example/cert"}, okta), ReasonTokenSignature},
		{"x5c header", sign(t, attacker, H{"x5c": []string{"MIIB"}}, okta), ReasonTokenSignature},
		{"crit header", sign(t, f.rsa, H{"crit": []string{"exp"}, "exp": 1}, okta), ReasonTokenMalformed},
		{"kid holding a path",
			sign(t, rs256("../../../../etc/passwd", rsaPriv), nil, okta), ReasonTokenUnknownKey},
		{"kid holding SQL", sign(t, rs256("x' OR '1'='1'; DROP TABLE keys; --", rsaPriv), nil, okta),
			ReasonTokenUnknownKey},
		{"unknown kid", sign(t, attacker, nil, okta), ReasonTokenUnknownKey},
		{"another issuer's key and kid", sign(t, f.otherK, nil, okta), ReasonTokenUnknownKey},
		{"another issuer's key under our kid",
			sign(t, rs256("okta-rsa-1", f.otherK.priv), nil, okta), ReasonTokenSignature},
		{"no kid, foreign key", sign(t, f.otherK, H{"kid": nil}, okta), ReasonTokenSignature},
		{"no kid, our key", sign(t, f.rsa, H{"kid": nil}, okta), ""},
		{"bad signature under a known kid", flip(sign(t, f.rsa, nil, okta)), ReasonTokenSignature},
		{"RS256 kid on the ES256 key",
			sign(t, rs256("okta-ec-1", rsaPriv), nil, okta), ReasonTokenSignature},

		// Times (skew 60 s).
		{"expired", okt("exp", at(-2*time.Minute)), ReasonTokenExpired},
		{"expired within the skew", okt("exp", at(-30*time.Second)), ""},
		{"nbf in the future", okt("nbf", at(5*time.Minute)), ReasonTokenNotYetValid},
		{"nbf within the skew", okt("nbf", at(30*time.Second)), ""},
		{"iat in the future", okt("iat", at(5*time.Minute)), ReasonTokenNotYetValid},
		{"exp missing", okt("exp", nil), ReasonTokenMalformed},
		{"iat missing", okt("iat", nil), ReasonTokenMalformed},
		{"exp a string", okt("exp", "tomorrow"), ReasonTokenMalformed},
		{"fractional exp", okt("exp", float64(now.Unix())+3600.5), ""},

		// Issuer.
		{"iss wrong", okt("iss", "https://evil.example/oauth2/default"), ReasonTokenIssuer},
		{"iss with a trailing slash", okt("iss", iss+"/"), ReasonTokenIssuer},
		{"iss in another case", okt("iss", strings.ToUpper(iss)), ReasonTokenIssuer},
		{"iss missing", okt("iss", nil), ReasonTokenIssuer},
		{"iss a number", okt("iss", 7), ReasonTokenMalformed},
		{"other trusted issuer's iss, our key", okt("iss", f.other.URL), ReasonTokenUnknownKey},

		// Audience.
		{"aud wrong", okt("aud", "api://other"), ReasonTokenAudience},
		{"aud array without ours", okt("aud", []string{"api://a", "api://b"}), ReasonTokenAudience},
		{"aud array with ours", okt("aud", []string{"api://a", oktaAudience}), ""},
		{"aud missing", okt("aud", nil), ReasonTokenAudience},
		{"aud a number", okt("aud", 1), ReasonTokenMalformed},
		{"org server token (aud the org)", okt("aud", "https://example.okta.com"), ReasonTokenAudience},

		// Client.
		{"another client (cid)", okt("cid", "0oaOTHER"), ReasonTokenClient},
		{"another client (client_id)",
			sign(t, f.rsa, nil, with(rfc9068, "client_id", "other")), ReasonTokenClient},
		{"another client (azp)", okt("cid", nil, "azp", "other"), ReasonTokenClient},
		{"client claims disagree", okt("client_id", "other"), ReasonTokenClient},
		{"no client claim", okt("cid", nil), ReasonTokenClient},

		// Kind.
		{"ID token as access token", sign(t, f.rsa, nil, oktaIDClaims(iss, now)), ReasonTokenType},
		{"ID token without nonce or at_hash", sign(t, f.rsa, nil,
			with(oktaIDClaims(iss, now), "nonce", nil, "at_hash", nil)), ReasonTokenAudience},
		{"typ JWT with nonce",
			sign(t, f.rsa, H{"typ": "JWT"}, with(okta, "nonce", "n")), ReasonTokenType},
		{"no typ with at_hash", okt("at_hash", "h"), ReasonTokenType},
		{"typ JOSE", sign(t, f.rsa, H{"typ": "JOSE"}, okta), ReasonTokenType},
		{"typ logout+jwt", sign(t, f.rsa, H{"typ": "logout+jwt"}, okta), ReasonTokenType},

		// Claims decoding.
		{"duplicate claim", edit(`"sub":`, `"sub":"admin","sub":`), ReasonTokenMalformed},
		{"duplicate iss", edit(`"iss":`, `"iss":"https://evil.example","iss":`), ReasonTokenMalformed},
		{"escaped duplicate", edit(`"sub":`, `"s\u0075b":"admin","sub":`), ReasonTokenMalformed},
		{"case-variant claims", edit(`"tier":`, `"Tier":"pro","tier":`), ReasonTokenMalformed},
		{"nested duplicate", edit(`"tier":`, `"x":{"a":1,"a":2},"tier":`), ReasonTokenMalformed},
		{"duplicate header alg",
			withHeader(`{"kid":"okta-rsa-1","alg":"none","alg":"RS256"}`), ReasonTokenMalformed},
		{"payload not an object", withPayload(`["iss"]`), ReasonTokenMalformed},
		{"payload with trailing data", withPayload(oktaJSON + `{}`), ReasonTokenMalformed},
		{"payload invalid UTF-8", edit(`"plus"`, "\"pl\xffus\""), ReasonTokenMalformed},
		{"sub missing", okt("sub", nil), ReasonTokenMalformed},
		{"scp of numbers", okt("scp", []int{1}), ReasonTokenMalformed},

		// Size and shape.
		{"oversized", sign(t, f.rsa, nil, bigClaims), ReasonTokenMalformed},
		{"four parts", sign(t, f.rsa, nil, okta) + ".e30", ReasonTokenMalformed},
		{"many dots", strings.Repeat("a.", 1000) + "a", ReasonTokenMalformed},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.e30", ReasonTokenMalformed},
		{"padding", sign(t, f.rsa, nil, okta) + "==", ReasonTokenMalformed},
		{"JWE five parts", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", ReasonTokenMalformed},
		{"header not base64url", "eyJ+bGciOiJSUzI1NiJ9.e30.c2ln", ReasonTokenMalformed},
		{"header not JSON", b64([]byte("hello")) + ".e30.c2ln", ReasonTokenMalformed},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), tt.token, "")
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("Verify(%s) = %q (%v), want %q", tt.name, got, errors.Unwrap(err), tt.want)
			}
			if err == nil {
				return
			}
			checkErrorText(t, err, tt.token)
		})
	}
}

// checkErrorText asserts that an error's text is the reason alone: no token
// text, no kid, no expected issuer or audience, no library text.
func checkErrorText(tb testing.TB, err error, token string) {
	tb.Helper()
	var e *Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %T is not an *Error", err)
	}
	if got, want := err.Error(), "identity: "+e.Reason; got != want {
		tb.Errorf("Error() = %q, want %q", got, want)
	}
	if e.Status != statusOf(e.Reason) || e.Status == 0 {
		tb.Errorf("Status = %d for reason %s", e.Status, e.Reason)
	}
	if len(e.KeyID) > maxLoggedLen+3 || strings.Contains(e.KeyID, token) {
		tb.Errorf("KeyID %q not clipped", e.KeyID)
	}
}

func TestVerifyOktaIdentity(t *testing.T) {
	f := newOktaFixture(t, nil)
	now := f.clock.Now()
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	token := sign(t, f.rsa, nil, oktaAccessClaims(f.okta.URL, now))

	got, err := f.v.Verify(context.Background(), token, "")
	if err != nil {
		t.Fatalf("Verify(okta token) = %v, want success", err)
	}
	want := Identity{
		Authenticated: true,
		Issuer:        f.okta.URL,
		Subject:       oktaLogin,
		ClientID:      oktaClient,
		Scopes:        []string{"openid", "profile", "email", "groups"},
		Groups:        []string{"Everyone", "tier-plus"},
		Expiry:        time.Unix(at(time.Hour), 0).UTC(),
		Claims: map[string]any{
			"ver": json.Number("1"), "jti": "AT.x1y2z3", "iss": f.okta.URL,
			"aud": oktaAudience, "sub": oktaLogin,
			"iat":       json.Number(itoa(now.Unix())),
			"exp":       json.Number(itoa(at(time.Hour))),
			"auth_time": json.Number(itoa(at(-10 * time.Minute))),
			"cid":       oktaClient, "uid": oktaUID,
			"scp":    []any{"openid", "profile", "email", "groups"},
			"groups": []any{"Everyone", "tier-plus"},
			"tier":   "plus",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify(okta token) identity (-want +got):\n%s", diff)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestVerifyRFC9068Scopes(t *testing.T) {
	f := newOktaFixture(t, nil)
	now := f.clock.Now()
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	claims := map[string]any{
		"iss": f.okta.URL, "aud": oktaAudience, "sub": "svc", "client_id": oktaClient,
		"scope": "read  write", "iat": now.Unix(), "exp": at(time.Minute),
		"groups": []any{"a", 1},
	}
	id, err := f.v.Verify(context.Background(), sign(t, f.rsa, H{"typ": "at+jwt"}, claims), "")
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if diff := cmp.Diff([]string{"read", "write"}, id.Scopes); diff != "" {
		t.Errorf("Scopes (-want +got):\n%s", diff)
	}
	if id.Groups != nil {
		t.Errorf("Groups = %v, want nil for a groups claim that is not all strings", id.Groups)
	}
	if id.ClientID != oktaClient {
		t.Errorf("ClientID = %q, want %q", id.ClientID, oktaClient)
	}
}

func TestRequireATJWT(t *testing.T) {
	f := newOktaFixture(t, func(c *IssuerConfig) { c.RequireATJWT = true })
	claims := oktaAccessClaims(f.okta.URL, f.clock.Now())
	tests := []struct {
		typ  any
		want string
	}{
		{nil, ReasonTokenType},
		{"JWT", ReasonTokenType},
		{"at+jwt", ""},
		{"application/at+jwt", ""},
	}
	for _, tt := range tests {
		header := H{"typ": tt.typ}
		_, err := f.v.Verify(context.Background(), sign(t, f.rsa, header, claims), "")
		if got := reasonOf(err); got != tt.want {
			t.Errorf("Verify(typ %v) with RequireATJWT = %q, want %q", tt.typ, got, tt.want)
		}
	}
}

func TestAnyClientWhenNoneConfigured(t *testing.T) {
	f := newOktaFixture(t, func(c *IssuerConfig) { c.ClientIDs = nil })
	now := f.clock.Now()
	for _, claims := range []map[string]any{
		with(oktaAccessClaims(f.okta.URL, now), "cid", "0oaANY"),
		with(oktaAccessClaims(f.okta.URL, now), "cid", nil),
	} {
		if _, err := f.v.Verify(context.Background(), sign(t, f.rsa, nil, claims), ""); err != nil {
			t.Errorf("Verify(cid %v) with no client list = %v, want success", claims["cid"], err)
		}
	}
}

func TestVerifyIDToken(t *testing.T) {
	f := newOktaFixture(t, nil)
	now := f.clock.Now()
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	iss := f.okta.URL
	access := sign(t, f.rsa, nil, oktaAccessClaims(iss, now))
	idc := oktaIDClaims(iss, now)
	idt := func(kv ...any) string { return sign(t, f.rsa, nil, with(idc, kv...)) }
	const mismatch = ReasonIDTokenMismatch
	several := []string{oktaClient, "x"}

	tests := []struct {
		name    string
		idToken string
		want    string
		inner   string // the wrapped reason, for logs
	}{
		{"bound by uid", sign(t, f.rsa, nil, idc), "", ""},
		{"bound by sub", sign(t, f.rsa, nil, with(idc, "sub", oktaLogin)), "", ""},
		{"typ JWT", sign(t, f.rsa, H{"typ": "JWT"}, idc), "", ""},
		{"another user", idt("sub", "00uSOMEONEELSE"), mismatch, ReasonIDTokenMismatch},
		{"another client", idt("aud", "0oaOTHER"), mismatch, ReasonTokenAudience},
		{"azp not allowed", idt("aud", several, "azp", "x"), mismatch, ReasonTokenClient},
		{"several aud, no azp", idt("aud", several), mismatch, ReasonTokenClient},
		{"the API audience", idt("aud", oktaAudience), mismatch, ReasonTokenAudience},
		{"expired", idt("exp", at(-time.Hour)), mismatch, ReasonTokenExpired},
		{"another issuer", sign(t, f.otherK, nil, with(idc, "iss", f.other.URL)),
			mismatch, ReasonTokenIssuer},
		{"bad signature", sign(t, testKey{"okta-rsa-1", "RS256", f.otherK.priv}, nil, idc),
			mismatch, ReasonTokenSignature},
		{"an access token", sign(t, f.rsa, H{"typ": "at+jwt"}, idc), mismatch, ReasonTokenType},
		{"duplicate claims", signRaw(t, "RS256", f.rsa.priv, `{"kid":"okta-rsa-1","alg":"RS256"}`,
			strings.Replace(mustJSON(t, idc), `"sub":`, `"sub":"x","sub":`, 1)),
			mismatch, ReasonTokenMalformed},
		{"not a JWT", "not-a-jwt", mismatch, ReasonTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.v.Verify(context.Background(), access, tt.idToken)
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("Verify(access, %s) = %q (%v), want %q", tt.name, got, errors.Unwrap(err), tt.want)
			}
			if err != nil {
				checkErrorText(t, err, tt.idToken)
				if inner := reasonOf(errors.Unwrap(err)); inner != tt.inner {
					t.Errorf("wrapped reason = %q, want %q", inner, tt.inner)
				}
				return
			}
			if id.Subject != oktaLogin || id.Profile["sub"] == nil || id.Profile["name"] != "Alex Example" {
				t.Errorf("identity = %+v, want subject %q with the ID token's claims as profile", id, oktaLogin)
			}
			if _, ok := id.Claims["name"]; ok {
				t.Errorf("ID-token claim leaked into Claims: %v", id.Claims)
			}
		})
	}
}

func TestIDTokenRefusedWithoutClients(t *testing.T) {
	f := newOktaFixture(t, func(c *IssuerConfig) { c.ClientIDs = nil })
	now := f.clock.Now()
	access := sign(t, f.rsa, nil, oktaAccessClaims(f.okta.URL, now))
	idToken := sign(t, f.rsa, nil, oktaIDClaims(f.okta.URL, now))
	_, err := f.v.Verify(context.Background(), access, idToken)
	if got := reasonOf(err); got != ReasonIDTokenMismatch {
		t.Errorf("Verify(access, id) with no client ids = %q, want %q", got, ReasonIDTokenMismatch)
	}
}

func TestVerifyWithoutAccessToken(t *testing.T) {
	f := newOktaFixture(t, nil)
	id, err := f.v.Verify(context.Background(), "", "")
	if err != nil || id.Authenticated {
		t.Errorf("Verify(\"\", \"\") = %+v, %v; want anonymous", id, err)
	}
	idToken := sign(t, f.rsa, nil, oktaIDClaims(f.okta.URL, f.clock.Now()))
	_, err = f.v.Verify(context.Background(), "", idToken)
	if got := reasonOf(err); got != ReasonInvalidRequest {
		t.Errorf("Verify(\"\", id token) = %q, want %q", got, ReasonInvalidRequest)
	}
}
