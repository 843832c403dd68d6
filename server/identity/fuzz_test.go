package identity

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// The fuzz targets run on their seed corpora (testdata/fuzz/) in every
// `go test`, and for a bounded time under test.sh with FUZZ=1 or CI=true.

// headerWith puts value in name n times (0, 1 or 2 by repeat).
func headerWith(name, value string, repeat uint8) http.Header {
	h := http.Header{}
	for range repeat % 3 {
		h.Add(name, value)
	}
	return h
}

// checkAccepted holds an accepted token to the documented shape: at most
// MaxTokenSize bytes, three non-empty parts of the base64url alphabet.
func checkAccepted(t *testing.T, what, token string) {
	t.Helper()
	if len(token) > MaxTokenSize {
		t.Fatalf("%s accepted a %d-byte token", what, len(token))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%s accepted %q with %d parts", what, token, len(parts))
	}
	for _, p := range parts {
		if p == "" || strings.IndexFunc(p, func(r rune) bool {
			return r > 127 || !isBase64URL(byte(r))
		}) >= 0 {
			t.Fatalf("%s accepted %q: part %q is not unpadded base64url", what, token, p)
		}
	}
}

// checkRefused holds a refusal to a 400 invalid_request whose text quotes
// nothing from the request.
func checkRefused(t *testing.T, what, value string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonInvalidRequest || e.Status != http.StatusBadRequest {
		t.Fatalf("%s(%q) error %v, want a 400 invalid_request *Error", what, value, err)
	}
	if len(value) >= 8 && strings.Contains(err.Error(), value) {
		t.Fatalf("%s(%q): the error text quotes the header", what, value)
	}
}

func FuzzBearerToken(f *testing.F) {
	f.Fuzz(func(t *testing.T, value string, repeat uint8) {
		h := headerWith("Authorization", value, repeat)
		token, err := BearerToken(h)
		switch n := len(h.Values("Authorization")); {
		case n == 0:
			if token != "" || err != nil {
				t.Fatalf("no Authorization header gave %q, %v; want anonymous", token, err)
			}
			return
		case n > 1:
			if err == nil {
				t.Fatalf("two Authorization headers %q accepted", value)
			}
		}
		if err != nil {
			checkRefused(t, "BearerToken", value, err)
			return
		}
		checkAccepted(t, "BearerToken", token)
		scheme, rest, _ := strings.Cut(value, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimLeft(rest, " ") != token {
			t.Fatalf("BearerToken(%q) = %q, not the one token after the Bearer scheme", value, token)
		}
	})
}

func FuzzIDTokenHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, value string, repeat uint8) {
		h := headerWith(IDTokenHeaderName, value, repeat)
		token, err := IDTokenHeader(h)
		switch n := len(h.Values(IDTokenHeaderName)); {
		case n == 0:
			if token != "" || err != nil {
				t.Fatalf("no X-ID-Token header gave %q, %v", token, err)
			}
			return
		case n > 1:
			if err == nil {
				t.Fatalf("two X-ID-Token headers %q accepted", value)
			}
		}
		if err != nil {
			checkRefused(t, "IDTokenHeader", value, err)
			return
		}
		checkAccepted(t, "IDTokenHeader", token)
		if token != value {
			t.Fatalf("IDTokenHeader(%q) = %q, want the header value itself", value, token)
		}
	})
}

// FuzzVerify runs the pre-parse and every check before the signature on
// arbitrary text, with a verifier whose one issuer has no keys: nothing
// may verify, and every refusal is an *Error with a documented reason,
// whose text never quotes the token.
func FuzzVerify(f *testing.F) {
	v, err := NewVerifier([]IssuerConfig{{
		Issuer: "http://127.0.0.1:1/oauth2/default", Audience: "api://default",
	}}, Options{}) // never started: no keys, no network
	if err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{
		ReasonTokenMalformed: true, ReasonTokenSignature: true, ReasonTokenIssuer: true,
		ReasonIssuerUnavailable: true, ReasonInvalidRequest: true,
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if tok, e := parseToken(raw); e == nil {
			checkAccepted(t, "parseToken", raw)
			if tok.claims == nil {
				t.Fatalf("parseToken(%q) accepted without claims", raw)
			}
		} else if e.Reason != ReasonTokenMalformed && e.Reason != ReasonTokenSignature {
			t.Fatalf("parseToken(%q) reason %q", raw, e.Reason)
		}

		id, err := v.Verify(context.Background(), raw, "")
		if raw == "" {
			if err != nil || id.Authenticated {
				t.Fatalf("Verify of no token = %+v, %v; want anonymous", id, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("Verify(%q) succeeded with no keys at all", raw)
		}
		var e *Error
		if !errors.As(err, &e) || !reasons[e.Reason] {
			t.Fatalf("Verify(%q) error %v, not an *Error with an expected reason", raw, err)
		}
		if parts := strings.Split(raw, "."); len(parts[0]) >= 8 && strings.Contains(err.Error(), parts[0]) {
			t.Fatalf("Verify(%q): the error text quotes the token", raw)
		}
	})
}
