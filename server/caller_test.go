package server

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

func TestTokenCache(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tc, err := newTokenCache(2, clock)
	if err != nil {
		t.Fatal(err)
	}
	who := func(iss string, exp time.Duration) *caller {
		return &caller{id: identity.Identity{Authenticated: true, Issuer: iss, Subject: "s", Expiry: now.Add(exp)}}
	}

	a, b, c := tokenKey("a.b.c", ""), tokenKey("a.b.c", "i.d.t"), tokenKey("x.y.z", "")
	if a == b {
		t.Fatal("an ID token does not change the key")
	}
	tc.add(a, who("https://one", time.Minute))
	tc.add(b, who("https://two", time.Hour))
	if _, ok := tc.get(a); !ok {
		t.Error("a fresh entry was not returned")
	}

	tc.add(tokenKey("already.expired.token", ""), who("https://one", -time.Second))
	if _, ok := tc.get(tokenKey("already.expired.token", "")); ok {
		t.Error("an expired token was cached")
	}
	tc.add(tokenKey("no.exp.at-all", ""), &caller{id: identity.Identity{Authenticated: true}})
	if _, ok := tc.get(tokenKey("no.exp.at-all", "")); ok {
		t.Error("a token without exp was cached")
	}

	now = now.Add(2 * time.Minute)
	if _, ok := tc.get(a); ok {
		t.Error("an entry outlived its token's exp")
	}
	if _, ok := tc.get(b); !ok {
		t.Error("an unexpired entry was dropped")
	}

	tc.add(c, who("https://one", time.Hour))
	tc.dropIssuer("https://two")
	if _, ok := tc.get(b); ok {
		t.Error("dropIssuer kept an entry of the issuer whose keys changed")
	}
	if _, ok := tc.get(c); !ok {
		t.Error("dropIssuer dropped another issuer's entry")
	}

	for i := range 5 {
		tc.add(tokenKey(string(rune('a'+i))+".b.c", ""), who("https://one", time.Hour))
	}
	if n := tc.len(); n > 2 {
		t.Errorf("cache holds %d entries, bound is 2", n)
	}
}

// The tier is the policy's answer for a token on one revision: a new
// revision asks the policy again.
func TestCallerTierFollowsTheRevision(t *testing.T) {
	policy := func(tier string) *decision.Policy {
		p, err := decision.LoadFS(fstest.MapFS{
			"tierguard/data.json": {Data: []byte(`{"tiers": ["anonymous", "free", "plus"]}`)},
			"tierguard/authz/authz.rego": {Data: []byte(`package tierguard.authz
tier := "` + tier + `" if input.subject.authenticated
default tier := "anonymous"
decision := {"allow": false, "reason": "tier_required", "required_tier": "plus", "tier": tier}
decisions := [decision | some _ in input.checks]`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	e, err := decision.NewEngine(ctx, policy("free"))
	if err != nil {
		t.Fatal(err)
	}
	who := &caller{id: identity.Identity{Authenticated: true, Subject: "s", Expiry: time.Now().Add(time.Hour)}}
	first := e.Current()
	if tier, ok := who.tierOn(ctx, first); !ok || tier != "free" {
		t.Fatalf("tier on the first revision = %q %v, want free", tier, ok)
	}
	second, err := e.Load(ctx, policy("plus"))
	if err != nil {
		t.Fatal(err)
	}
	if tier, ok := who.tierOn(ctx, second); !ok || tier != "plus" {
		t.Errorf("tier on the second revision = %q %v, want plus", tier, ok)
	}
	if tier, _ := anonymousCaller.tierOn(ctx, second); tier != "anonymous" {
		t.Errorf("anonymous tier = %q", tier)
	}
}
