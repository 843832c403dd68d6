package identity

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startDevIssuer serves a dev issuer on a loopback listener, the way
// `serve --dev` mounts it, and returns it with its server's base URL.
func startDevIssuer(tb testing.TB) (*DevIssuer, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	base := "http://" + ln.Addr().String()
	d, err := NewDevIssuer(base + "/dev")
	if err != nil {
		tb.Fatalf("NewDevIssuer: %v", err)
	}
	srv := httptest.NewUnstartedServer(d.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	tb.Cleanup(srv.Close)
	return d, base
}

// postToken calls POST /dev/token over HTTP.
func postToken(tb testing.TB, base, body string) (int, []byte) {
	tb.Helper()
	resp, err := http.Post(base+"/dev/token", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatalf("POST /dev/token: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("reading the token response: %v", err)
	}
	return resp.StatusCode, data
}

func TestDevIssuerEndToEnd(t *testing.T) {
	d, base := startDevIssuer(t)
	v := startVerifier(t, []IssuerConfig{d.IssuerConfig()}, Options{})
	waitReady(t, v)

	status, body := postToken(t, base,
		`{"sub":"alice@example.com","tier":"plus","groups":["beta"],"expires_in":600}`)
	if status != http.StatusOK {
		t.Fatalf("POST /dev/token = %d %s, want 200", status, body)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("decoding the token response: %v", err)
	}
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 600 {
		t.Errorf("token response = %+v, want Bearer, 600", tr)
	}

	// The access token is Okta-shaped: kid and alg only.
	header, err := decodeSegment(strings.SplitN(tr.AccessToken, ".", 2)[0])
	if err != nil || len(header) != 2 || header["alg"] != "RS256" || header["kid"] == nil {
		t.Errorf("access token header = %v (%v), want only kid and alg RS256", header, err)
	}

	id, err := v.Verify(context.Background(), tr.AccessToken, tr.IDToken)
	if err != nil {
		t.Fatalf("Verify(dev tokens) = %v, want success", err)
	}
	uid := devUID("alice@example.com")
	got := struct {
		Subject, ClientID, Tier, UID, ProfileSub, Email string
		Groups, Scopes                                  []string
	}{
		id.Subject, id.ClientID, id.Claims["tier"].(string), id.Claims["uid"].(string),
		id.Profile["sub"].(string), id.Profile["email"].(string), id.Groups, id.Scopes,
	}
	want := got
	want.Subject, want.ClientID, want.Tier, want.UID = "alice@example.com", DevClientID, "plus", uid
	want.ProfileSub, want.Email = uid, "alice@example.com"
	want.Groups, want.Scopes = []string{"beta"}, []string{"openid", "profile", "email"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dev identity (-want +got):\n%s", diff)
	}
	if left := time.Until(id.Expiry); left < 590*time.Second || left > 601*time.Second {
		t.Errorf("Expiry in %v, want about 600 s", left)
	}
}

func TestDevTokenDefaults(t *testing.T) {
	d, base := startDevIssuer(t)
	v := startVerifier(t, []IssuerConfig{d.IssuerConfig()}, Options{})
	waitReady(t, v)

	for _, body := range []string{"", "{}"} {
		status, data := postToken(t, base, body)
		if status != http.StatusOK {
			t.Fatalf("POST /dev/token %q = %d %s", body, status, data)
		}
		var tr TokenResponse
		_ = json.Unmarshal(data, &tr)
		id, err := v.Verify(context.Background(), tr.AccessToken, "")
		if err != nil {
			t.Fatalf("Verify(default dev token) = %v", err)
		}
		_, hasTier := id.Claims["tier"]
		_, hasGroups := id.Claims["groups"]
		if id.Subject != "dev-user" || tr.ExpiresIn != 3600 || hasTier || hasGroups {
			t.Errorf("default token: sub %q, expires_in %d, tier %v, groups %v; "+
				"want dev-user, 3600, no tier, no groups", id.Subject, tr.ExpiresIn, hasTier, hasGroups)
		}
	}
}

func TestDevTokenRequestLimits(t *testing.T) {
	_, base := startDevIssuer(t)
	tests := []struct {
		name string
		body string
	}{
		{"expires_in negative", `{"expires_in":-1}`},
		{"expires_in over a day", `{"expires_in":86401}`},
		{"unknown field", `{"sub":"a","admin":true}`},
		{"two values", `{"sub":"a"}{"sub":"b"}`},
		{"not JSON", `sub=a`},
		{"body over 4 KiB", `{"sub":"` + strings.Repeat("a", 5000) + `"}`},
		{"sub too long", `{"sub":"` + strings.Repeat("a", 200) + `"}`},
		{"sub with a space", `{"sub":"a b"}`},
		{"tier with a newline", `{"tier":"plus\n"}`},
		{"too many groups", `{"groups":[` + strings.Repeat(`"g",`, 40) + `"g"]}`},
		{"empty scope", `{"scopes":[""]}`},
	}
	for _, tt := range tests {
		status, body := postToken(t, base, tt.body)
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request"`) {
			t.Errorf("POST /dev/token (%s) = %d %s, want 400 invalid_request", tt.name, status, body)
		}
	}

	resp, err := http.Get(base + "/dev/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /dev/token = %d, want 405", resp.StatusCode)
	}
}

func TestNewDevIssuerRefuses(t *testing.T) {
	for _, u := range []string{
		"http://10.0.0.1:8080/dev",
		"http://0.0.0.0:8080/dev",
		"http://example.com/dev",
		"http://localhost.example.com/dev",
		"http://127.0.0.1:8080",
		"http://127.0.0.1:8080/dev/",
		"http://127.0.0.1:8080/dev?x=1",
		"http://127.0.0.1:8080/d{ev}",
		"ftp://127.0.0.1/dev",
	} {
		if _, err := NewDevIssuer(u); err == nil {
			t.Errorf("NewDevIssuer(%q) = nil error, want a refusal", u)
		}
	}
}
