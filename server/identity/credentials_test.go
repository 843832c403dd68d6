package identity

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

const sampleJWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"

func TestBearerToken(t *testing.T) {
	big := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", MaxTokenSize) + ".c2ln"
	tests := []struct {
		name    string
		headers []string // Authorization values; nil for none
		want    string
		reason  string
	}{
		{"no header", nil, "", ""},
		{"bearer", []string{"Bearer " + sampleJWT}, sampleJWT, ""},
		{"lowercase bearer", []string{"bearer " + sampleJWT}, sampleJWT, ""},
		{"uppercase BEARER", []string{"BEARER " + sampleJWT}, sampleJWT, ""},
		{"several spaces (RFC 6750 1*SP)", []string{"Bearer   " + sampleJWT}, sampleJWT, ""},
		{"two headers", []string{"Bearer " + sampleJWT, "Bearer " + sampleJWT}, "", ReasonInvalidRequest},
		{"Basic", []string{"Basic dXNlcjpwYXNz"}, "", ReasonInvalidRequest},
		{"empty", []string{""}, "", ReasonInvalidRequest},
		{"scheme only", []string{"Bearer"}, "", ReasonInvalidRequest},
		{"scheme and space", []string{"Bearer "}, "", ReasonInvalidRequest},
		{"tab separator", []string{"Bearer\t" + sampleJWT}, "", ReasonInvalidRequest},
		{"leading space", []string{" Bearer " + sampleJWT}, "", ReasonInvalidRequest},
		{"trailing space", []string{"Bearer " + sampleJWT + " "}, "", ReasonInvalidRequest},
		{"two tokens", []string{"Bearer " + sampleJWT + " " + sampleJWT}, "", ReasonInvalidRequest},
		{"comma-joined tokens",
			[]string{"Bearer " + sampleJWT + "," + sampleJWT}, "", ReasonInvalidRequest},
		{"Bearerx scheme", []string{"Bearerx " + sampleJWT}, "", ReasonInvalidRequest},
		{"not a JWT", []string{"Bearer 2YotnFZFEjr1zCsicMWpAA"}, "", ReasonInvalidRequest},
		{"many dots", []string{"Bearer a.b.c.d"}, "", ReasonInvalidRequest},
		{"empty part", []string{"Bearer a..c"}, "", ReasonInvalidRequest},
		{"padding", []string{"Bearer " + sampleJWT + "=="}, "", ReasonInvalidRequest},
		{"standard base64", []string{"Bearer a+b.c/d.e"}, "", ReasonInvalidRequest},
		{"oversized", []string{"Bearer " + big}, "", ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.headers {
				h.Add("Authorization", v)
			}
			h.Set("Cookie", "access_token="+sampleJWT)
			got, err := BearerToken(h)
			if got != tt.want || reasonOf(err) != tt.reason {
				t.Fatalf("BearerToken(%q) = %q, %q; want %q, %q",
					tt.headers, clip(got), reasonOf(err), clip(tt.want), tt.reason)
			}
			if err != nil {
				var e *Error
				if errors.As(err, &e); e.Status != http.StatusBadRequest {
					t.Errorf("status = %d, want 400", e.Status)
				}
				if strings.Contains(err.Error(), sampleJWT) {
					t.Errorf("error text holds the token: %q", err)
				}
			}
		})
	}
}

func TestIDTokenHeader(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
		reason string
	}{
		{"absent", nil, "", ""},
		{"one token", []string{sampleJWT}, sampleJWT, ""},
		{"two headers", []string{sampleJWT, sampleJWT}, "", ReasonInvalidRequest},
		{"with a scheme", []string{"Bearer " + sampleJWT}, "", ReasonInvalidRequest},
		{"empty", []string{""}, "", ReasonInvalidRequest},
		{"not a JWT", []string{"hello"}, "", ReasonInvalidRequest},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.values {
			h.Add(IDTokenHeaderName, v)
		}
		got, err := IDTokenHeader(h)
		if got != tt.want || reasonOf(err) != tt.reason {
			t.Errorf("IDTokenHeader(%s) = %q, %q; want %q, %q",
				tt.name, got, reasonOf(err), tt.want, tt.reason)
		}
	}
}

func TestTokenRedacts(t *testing.T) {
	tok := Token(sampleJWT)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("m", "token", tok)
	printed := []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %s %#v %+v", tok, tok, tok, tok),
		fmt.Sprintf("%v", struct{ T Token }{tok}), logs.String(),
	}
	for _, p := range printed {
		if strings.Contains(p, sampleJWT) || !strings.Contains(p, redacted) {
			t.Errorf("printed token %q, want it redacted", p)
		}
	}
}

func TestErrorLogValue(t *testing.T) {
	var logs bytes.Buffer
	err := &Error{
		Reason: ReasonIDTokenMismatch, Status: 401, Issuer: "https://i.example",
		KeyID: "k1", Subject: "alex",
		Err: fail(ReasonTokenExpired, errors.New("exp is past")),
	}
	slog.New(slog.NewTextHandler(&logs, nil)).Info("token refused", "err", err)
	want := `err.reason=id_token_mismatch err.iss=https://i.example err.kid=k1 err.sub=alex ` +
		`err.cause.reason=token_expired err.cause.cause="exp is past"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log = %s\nwant it to contain %s", logs.String(), want)
	}
	if got := err.Error(); got != "identity: id_token_mismatch" {
		t.Errorf("Error() = %q", got)
	}
}

func TestIssuerConfigValidate(t *testing.T) {
	ok := IssuerConfig{Issuer: "https://example.okta.com/oauth2/default", Audience: "api://default"}
	issuer := func(u string) IssuerConfig { return with2(ok, func(c *IssuerConfig) { c.Issuer = u }) }
	algs := func(a ...string) IssuerConfig {
		return with2(ok, func(c *IssuerConfig) { c.Algorithms = a })
	}
	tests := []struct {
		name    string
		cfg     IssuerConfig
		wantErr string // substring; "" for valid
	}{
		{"https", ok, ""},
		{"http on 127.0.0.1", issuer("http://127.0.0.1:8080/dev"), ""},
		{"http on 127.1.2.3", issuer("http://127.1.2.3/dev"), ""},
		{"http on ::1", issuer("http://[::1]:8080"), ""},
		{"http on localhost", issuer("http://localhost:8080/x"), ""},
		{"http elsewhere", issuer("http://example.okta.com"), "loopback"},
		{"http on 10/8", issuer("http://10.0.0.1"), "loopback"},
		{"http on localhost.evil", issuer("http://localhost.evil.example"), "loopback"},
		{"ftp", issuer("ftp://example.com"), "scheme"},
		{"relative", issuer("/oauth2/default"), "absolute"},
		{"query", issuer(ok.Issuer + "?x=1"), "query"},
		{"fragment", issuer(ok.Issuer + "#x"), "fragment"},
		{"user info", issuer("https://u:p@example.com"), "user info"},
		{"no issuer", issuer(""), "required"},
		{"no audience", with2(ok, func(c *IssuerConfig) { c.Audience = "" }), "audience"},
		{"empty client id", with2(ok, func(c *IssuerConfig) { c.ClientIDs = []string{""} }), "client"},
		{"HS256", algs("HS256"), "HS256"},
		{"none", algs("none"), "none"},
		{"rs256 lowercase", algs("rs256"), "rs256"},
		{"EdDSA", algs("EdDSA", "PS256"), ""},
		{"negative skew", with2(ok, func(c *IssuerConfig) { c.ClockSkew = -time.Second }), "skew"},
		{"huge skew", with2(ok, func(c *IssuerConfig) { c.ClockSkew = time.Hour }), "skew"},
		{"negative key age", with2(ok, func(c *IssuerConfig) { c.MaxKeyAge = -1 }), "key age"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Validate(%s) = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Validate(%s) = %v, want an error about %q", tt.name, err, tt.wantErr)
		}
	}
}

func with2(c IssuerConfig, f func(*IssuerConfig)) IssuerConfig {
	c.ClientIDs = append([]string(nil), c.ClientIDs...)
	f(&c)
	return c
}

func TestNewVerifierRefuses(t *testing.T) {
	ok := IssuerConfig{Issuer: "https://example.okta.com/oauth2/default", Audience: "api://default"}
	tests := []struct {
		name string
		cfgs []IssuerConfig
		opts Options
	}{
		{"no issuers", nil, Options{}},
		{"invalid issuer", []IssuerConfig{{Issuer: "http://example.com", Audience: "a"}}, Options{}},
		{"duplicate issuer", []IssuerConfig{ok, ok}, Options{}},
		{"key age not above the refresh", []IssuerConfig{with2(ok, func(c *IssuerConfig) {
			c.MaxKeyAge = time.Minute
		})}, Options{}},
		{"negative cooldown", []IssuerConfig{ok}, Options{RefetchCooldown: -1}},
	}
	for _, tt := range tests {
		if _, err := NewVerifier(tt.cfgs, tt.opts); err == nil {
			t.Errorf("NewVerifier(%s) = nil error, want one", tt.name)
		}
	}
}
