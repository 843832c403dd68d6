package server

import (
	"context"
	"crypto/sha256"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

// caller is a verified identity plus what the policy made of it. The tier
// is computed by the policy once per token and revision, then reused by
// every request that presents the same token.
type caller struct {
	id   identity.Identity
	tier atomic.Pointer[tierMemo]
}

type tierMemo struct {
	rev  *decision.Revision
	tier string
}

var anonymousCaller = &caller{}

// tierOn returns the caller's tier on rev, computing it on first use.
func (c *caller) tierOn(ctx context.Context, rev *decision.Revision) (string, bool) {
	if m := c.tier.Load(); m != nil && m.rev == rev {
		return m.tier, true
	}
	tier, err := rev.Tier(ctx, SubjectOf(c.id))
	if err != nil {
		return "", false
	}
	if c.id.Authenticated {
		c.tier.Store(&tierMemo{rev: rev, tier: tier})
	}
	return tier, true
}

// DefaultTokenCacheSize bounds the verified-token cache.
const DefaultTokenCacheSize = 10000

// tokenCache remembers verified tokens so a repeated bearer token costs a
// hash and a lookup instead of a signature check. It is keyed by a SHA-256
// of the token pair (never the token itself), bounded (LRU), an entry
// never outlives its token's exp, and an issuer's entries are dropped when
// its key set changes, so a removed key stops working at once.
type tokenCache struct {
	cache *lru.Cache[[32]byte, *caller]
	now   func() time.Time
}

func newTokenCache(size int, now func() time.Time) (*tokenCache, error) {
	c, err := lru.New[[32]byte, *caller](size)
	if err != nil {
		return nil, err
	}
	return &tokenCache{cache: c, now: now}, nil
}

func tokenKey(access, idToken string) [32]byte {
	h := sha256.New()
	h.Write([]byte(access))
	h.Write([]byte{0})
	h.Write([]byte(idToken))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (t *tokenCache) get(k [32]byte) (*caller, bool) {
	c, ok := t.cache.Get(k)
	if !ok {
		return nil, false
	}
	if !t.now().Before(c.id.Expiry) {
		t.cache.Remove(k)
		return nil, false
	}
	return c, true
}

func (t *tokenCache) add(k [32]byte, c *caller) {
	if c.id.Expiry.IsZero() || !t.now().Before(c.id.Expiry) {
		return
	}
	t.cache.Add(k, c)
}

// dropIssuer forgets every token of iss.
func (t *tokenCache) dropIssuer(iss string) {
	for _, k := range t.cache.Keys() {
		if c, ok := t.cache.Peek(k); ok && c.id.Issuer == iss {
			t.cache.Remove(k)
		}
	}
}

func (t *tokenCache) len() int { return t.cache.Len() }
