package identity

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Another site's page could POST text/plain without a CORS preflight; the
// dev issuer must not mint tokens for it.
func TestDevTokenNeedsJSON(t *testing.T) {
	d, err := NewDevIssuer("http://127.0.0.1:8080/dev")
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded"} {
		req := httptest.NewRequest("POST", "/dev/token", strings.NewReader(`{"tier": "pro"}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "access_token") {
			t.Errorf("Content-Type %q: %d %s, want 400 and no token", ct, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest("POST", "/dev/token", strings.NewReader(`{"tier": 3}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "Go struct") {
		t.Errorf("a wrongly typed tier: %d %s, want 400 without Go internals", rec.Code, rec.Body)
	}
}
