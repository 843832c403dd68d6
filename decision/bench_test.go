package decision

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/tierguard/tierguard/decision/decisiontest"
)

var plusSubject = Subject{
	Authenticated: true,
	Issuer:        "https://example.okta.com/oauth2/default",
	Subject:       "alex@example.com",
	Groups:        []string{"Everyone", "tier-plus"},
	Claims:        map[string]any{"tier": "plus", "uid": "00u1a2b3c4d5e6f7"},
}

func BenchmarkDecide(b *testing.B) {
	e := embeddedEngine(b)
	in := Input{Subject: plusSubject, Check: Check{Kind: KindAPI, Method: "GET", Template: "/api/treasure-map"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Decide(ctx, in); !d.Allow {
			b.Fatalf("unexpected deny: %+v", d)
		}
	}
}

func BenchmarkDecideBatch(b *testing.B) {
	e := embeddedEngine(b)
	tables := e.Current().Tables()
	for _, n := range []int{10, 100} {
		checks := make([]Check, n)
		for i := range checks {
			r := tables.APIRoutes[i%len(tables.APIRoutes)]
			checks[i] = Check{Kind: KindAPI, Method: r.Method, Template: r.Template}
		}
		b.Run(fmt.Sprintf("checks=%d", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if got := e.Current().DecideBatch(ctx, plusSubject, nil, checks); len(got) != n {
					b.Fatalf("got %d decisions", len(got))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/check")
		})
	}
}

// BenchmarkRouteTableSize decides against generated policies of growing
// size: route lookup is by key, so the cost should stay flat.
func BenchmarkRouteTableSize(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		e := syntheticEngine(b, n)
		in := Input{Subject: plusSubject, Check: Check{Kind: KindAPI, Method: "GET", Template: fmt.Sprintf("/api/r%d/:id", n/2)}}
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if d := e.Decide(ctx, in); d.Reason == ReasonPolicyError || d.Reason == ReasonRouteUnknown {
					b.Fatalf("unexpected decision %+v", d)
				}
			}
		})
	}
}

func syntheticPolicy(tb testing.TB, n int) fstest.MapFS {
	tb.Helper()
	fsys, err := decisiontest.SyntheticPolicy(n)
	if err != nil {
		tb.Fatal(err)
	}
	return fsys
}

func syntheticEngine(tb testing.TB, n int) *Engine {
	tb.Helper()
	p, err := LoadFS(syntheticPolicy(tb, n))
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewEngine(context.Background(), p)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func BenchmarkPrepare10000Routes(b *testing.B) {
	p, err := LoadFS(syntheticPolicy(b, 10000))
	if err != nil {
		b.Fatal(err)
	}
	e := embeddedEngine(b)
	for b.Loop() {
		if _, err := e.Load(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}
