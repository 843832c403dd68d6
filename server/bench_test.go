package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tierguard/tierguard/server"
)

// Benchmarks through the real Echo handler (middleware, routing, JSON),
// without a network: go test -bench . -benchmem ./server/

func benchService(b *testing.B, cfg server.Config) (*service, http.Handler) {
	b.Helper()
	s := startService(b, cfg)
	waitForTable(b, s)
	srv, err := server.New(cfg, s.engine, s.verifier, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s, srv.Handler()
}

func waitForTable(b *testing.B, s *service) {
	deadline := time.Now().Add(20 * time.Second)
	for s.engine.Current().TableStatus().State == "building" {
		if time.Now().After(deadline) {
			b.Fatal("table not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func serve(b *testing.B, h http.Handler, method, path, token, body string, want int) {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequestWithContext(context.Background(), method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req = httptest.NewRequestWithContext(context.Background(), method, path, nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s = %d, want %d: %s", method, path, rec.Code, want, rec.Body)
	}
}

func BenchmarkAPIAnonymous(b *testing.B) {
	_, h := benchService(b, server.Config{})
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "GET", "/api/news", "", "", 200)
	}
}

// BenchmarkAPIBearer compares a bearer-token request with and without the
// verified-token cache: without it, every request checks a signature.
func BenchmarkAPIBearer(b *testing.B) {
	for _, size := range []int{server.DefaultTokenCacheSize, -1} {
		name := "cache"
		if size < 0 {
			name = "no-cache"
		}
		b.Run(name, func(b *testing.B) {
			s, h := benchService(b, server.Config{TokenCacheSize: size})
			token := s.token(b, "plus")
			b.ReportAllocs()
			for b.Loop() {
				serve(b, h, "GET", "/api/treasure-map", token, "", 200)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	s, h := benchService(b, server.Config{})
	token := s.token(b, "plus")
	for _, n := range []int{1, 10, 100} {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"kind": "api", "method": "GET", "path": "/api/videos/%d"}`, i)
		}
		body := `{"checks": [` + strings.Join(items, ",") + `]}`
		if n == 1 {
			body = items[0]
		}
		b.Run(fmt.Sprintf("checks=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(b, h, "POST", "/authz/check", token, body, 200)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/check")
		})
	}
}
