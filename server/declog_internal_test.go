package server

import (
	"strings"
	"testing"

	"github.com/tierguard/tierguard/decision"
)

func TestLogInputRedactsTokensInClientStrings(t *testing.T) {
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
	in := logInput(decision.Subject{}, nil, decision.Check{
		Kind: decision.KindAPI, Method: "GET", Path: "/api/videos/" + jwt, Name: jwt,
	})
	c := in["check"].(decision.Check)
	for _, v := range []string{c.Path, c.Name} {
		if strings.Contains(v, "eyJzdWIiOiJ4In0") {
			t.Errorf("decision-log input keeps a token: %q", v)
		}
	}
	if !strings.HasPrefix(c.Path, "/api/videos/") {
		t.Errorf("redaction lost the path itself: %q", c.Path)
	}
}

func TestPathOnly(t *testing.T) {
	for in, want := range map[string]string{
		"/api/news":                "/api/news",
		"/api/news?access_token=x": "/api/news",
		"/videos/1#frag":           "/videos/1",
		"/api/videos/%2F?x=1#y":    "/api/videos/%2F",
	} {
		if got := pathOnly(in); got != want {
			t.Errorf("pathOnly(%q) = %q, want %q", in, got, want)
		}
	}
}
