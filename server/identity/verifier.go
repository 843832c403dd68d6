// Package identity establishes who is calling: it verifies OpenID Connect
// access tokens (and an optional ID token) from trusted issuers, strictly,
// before any policy runs, and provides the dev issuer of `serve --dev`.
//
// It builds on go-oidc for discovery and signature verification, and adds
// what go-oidc leaves to its callers: access-token rules (RFC 9068 and the
// typ-less tokens of Okta and others), strict claim decoding, a bounded key
// set, and stable reason codes for every failure.
package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Identity is a verified caller, what the server turns into the decision
// input's subject (and profile).
type Identity struct {
	// Authenticated is false only for Anonymous().
	Authenticated bool
	// Issuer is the verified iss, byte-equal to a configured issuer.
	Issuer string
	// Subject is the access token's sub (Okta: often the login).
	Subject string
	// ClientID is the client the token was issued to: cid, client_id or
	// azp, whichever the token has (they must agree).
	ClientID string
	// Scopes from Okta's scp array, an scp string or RFC 9068's scope.
	Scopes []string
	// Groups is the groups claim when it is an array of strings.
	Groups []string
	// Claims is every verified access-token claim, decoded once. Numbers
	// are json.Number, so large integers keep every digit; objects are
	// map[string]any and arrays []any.
	Claims map[string]any
	// Profile is the verified ID token's claims (X-ID-Token), or nil.
	// Profile is for display: it never grants anything.
	Profile map[string]any
	// Expiry is the access token's exp; nothing derived from the token may
	// be cached or promised beyond it.
	Expiry time.Time
}

// Anonymous is the identity of a request without credentials. It is never
// what an invalid token becomes: that is an error.
func Anonymous() Identity { return Identity{} }

// Verifier verifies tokens from a fixed set of trusted issuers. It is safe
// for concurrent use. Create it with NewVerifier, then Start it: until an
// issuer's keys are fetched, its tokens fail with issuer_unavailable.
type Verifier struct {
	issuers  []*issuer
	byIssuer map[string]*issuer
	opts     Options
	start    sync.Once

	mu        sync.Mutex
	listeners []func(issuer string)
}

// issuer is one trusted issuer: its configuration, its key set, and the
// go-oidc verifier that uses that key set.
type issuer struct {
	cfg  IssuerConfig
	keys *keySet
	oidc *oidc.IDTokenVerifier
}

// NewVerifier validates the configuration and builds a verifier. It does
// no network I/O; Start does.
func NewVerifier(issuers []IssuerConfig, opts Options) (*Verifier, error) {
	if len(issuers) == 0 {
		return nil, errors.New("identity: no issuer configured")
	}
	if opts.RefetchCooldown < 0 || opts.RefreshInterval < 0 {
		return nil, errors.New("identity: negative refetch cooldown or refresh interval")
	}
	opts = opts.withDefaults()
	client := strictClient(opts.HTTPClient)

	v := &Verifier{byIssuer: map[string]*issuer{}, opts: opts}
	for _, cfg := range issuers {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		if _, dup := v.byIssuer[cfg.Issuer]; dup {
			return nil, fmt.Errorf("identity: issuer %q configured twice", cfg.Issuer)
		}
		cfg = cfg.withDefaults()
		if cfg.MaxKeyAge <= opts.RefreshInterval {
			return nil, fmt.Errorf("identity: issuer %q: max key age %v must exceed "+
				"the refresh interval %v", cfg.Issuer, cfg.MaxKeyAge, opts.RefreshInterval)
		}

		is := v.newIssuer(cfg, client)
		v.issuers = append(v.issuers, is)
		v.byIssuer[cfg.Issuer] = is
	}
	return v, nil
}

// newIssuer wires one issuer's key set into a go-oidc verifier. go-oidc
// checks the algorithm, the signature (through our key set) and iss; its
// expiry and audience checks are skipped because ours apply the skew and
// the access-token rules it does not know.
func (v *Verifier) newIssuer(cfg IssuerConfig, client *http.Client) *issuer {
	algs := make([]jose.SignatureAlgorithm, len(cfg.Algorithms))
	for i, a := range cfg.Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	ks := &keySet{
		issuer:    cfg.Issuer,
		algs:      algs,
		maxKeyAge: cfg.MaxKeyAge,
		cooldown:  v.opts.RefetchCooldown,
		client:    client,
		now:       v.opts.Now,
		log:       v.opts.Logger,
		changed:   v.keysChanged,
	}
	oidcCfg := &oidc.Config{
		SupportedSigningAlgs: slices.Clone(cfg.Algorithms),
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		Now:                  v.opts.Now,
	}
	return &issuer{cfg: cfg, keys: ks, oidc: oidc.NewVerifier(cfg.Issuer, ks, oidcCfg)}
}

// Start discovers every issuer and fetches its keys in the background,
// retrying with exponential backoff until it works, then refreshing
// periodically. It returns at once and stops when ctx is done. Only the
// first call starts anything. Call it after the listener serving any local
// issuer (the dev issuer) is up, or the first attempt fails and waits out a
// backoff.
func (v *Verifier) Start(ctx context.Context) {
	v.start.Do(func() {
		for _, is := range v.issuers {
			go is.keys.run(ctx, v.opts.RefreshInterval)
		}
	})
}

// Status reports each issuer's readiness, in configuration order.
func (v *Verifier) Status() []IssuerStatus {
	out := make([]IssuerStatus, len(v.issuers))
	for i, is := range v.issuers {
		out[i] = is.keys.status()
	}
	return out
}

// Ready reports whether every issuer has usable keys.
func (v *Verifier) Ready() bool {
	for _, is := range v.issuers {
		if _, ok := is.keys.usableKeys(); !ok {
			return false
		}
	}
	return true
}

// OnKeysChanged registers f, called with the issuer URL after its key set
// changed (a key added or removed) or its keys expired. A cache of verified
// tokens must drop that issuer's entries: a removed key must stop
// verifying. f runs on a background goroutine and must not block.
func (v *Verifier) OnKeysChanged(f func(issuer string)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.listeners = append(v.listeners, f)
}

func (v *Verifier) keysChanged(iss string) {
	v.mu.Lock()
	listeners := slices.Clone(v.listeners)
	v.mu.Unlock()
	for _, f := range listeners {
		f(iss)
	}
}

// KeyFetches returns how many JWKS fetches were made for issuer so far, for
// metrics and for tests of the refetch bound.
func (v *Verifier) KeyFetches(issuer string) int64 {
	is, ok := v.byIssuer[issuer]
	if !ok {
		return 0
	}
	return is.keys.fetches.Load()
}

// Verify verifies an access token and, when idToken is not "", the ID token
// that came with it (X-ID-Token), and returns the caller's identity.
//
// An empty accessToken is the anonymous caller, unless an ID token came
// alone: that is invalid_request (an ID token is never a credential).
// Every failure is an *Error; its Reason is the only thing to show. Verify
// does not log: the caller logs the *Error, which carries iss, kid and sub
// and never the token.
//
// A failure of the ID token, whatever it is, has reason id_token_mismatch;
// the more precise reason is in the wrapped *Error, for logs.
func (v *Verifier) Verify(ctx context.Context, accessToken, idToken string) (Identity, error) {
	if accessToken == "" {
		if idToken != "" {
			return Identity{}, fail(ReasonInvalidRequest, errIDTokenAlone)
		}
		return Anonymous(), nil
	}

	id, e := v.verifyAccessToken(ctx, accessToken)
	if e != nil {
		return Identity{}, e
	}
	if idToken == "" {
		return id, nil
	}

	profile, e := v.verifyIDToken(ctx, id, idToken)
	if e != nil {
		return Identity{}, e
	}
	id.Profile = profile
	return id, nil
}

// verifyAccessToken runs every access-token check, in an order that makes
// the reason precise: shape, issuer, algorithm, signature, kind, times,
// audience, subject, client.
func (v *Verifier) verifyAccessToken(ctx context.Context, raw string) (Identity, *Error) {
	t, e := parseToken(raw)
	if e != nil {
		return Identity{}, e
	}
	is, e := v.issuerOf(t)
	if e != nil {
		return Identity{}, e
	}
	annotate := func(e *Error) *Error {
		e.Issuer, e.KeyID = is.cfg.Issuer, clip(t.kid)
		return e
	}

	if e := is.verifySignature(ctx, t); e != nil {
		return Identity{}, annotate(e)
	}
	if e := checkAccessType(is.cfg, t); e != nil {
		return Identity{}, annotate(e)
	}
	exp, e := timeChecks{now: v.opts.Now(), skew: is.cfg.ClockSkew}.check(t.claims)
	if e != nil {
		return Identity{}, annotate(e)
	}

	id, e := accessIdentity(is.cfg, t.claims)
	if e != nil {
		e = annotate(e)
		e.Subject = id.Subject
		return Identity{}, e
	}
	id.Expiry = exp
	return id, nil
}

// issuerOf picks the configured issuer named by the token's unverified
// iss. This only chooses whose keys to try: the signature, checked next
// with that issuer's keys alone, is what makes iss true.
func (v *Verifier) issuerOf(t *parsedToken) (*issuer, *Error) {
	iss, err := stringClaim(t.claims, "iss")
	if err != nil {
		return nil, fail(ReasonTokenMalformed, err)
	}
	is, ok := v.byIssuer[iss]
	if !ok {
		e := fail(ReasonTokenIssuer, errors.New("iss names no trusted issuer"))
		e.Issuer, e.KeyID = clip(iss), clip(t.kid)
		return nil, e
	}
	return is, nil
}

// verifySignature checks the algorithm, then has go-oidc verify the token
// with this issuer's key set, and makes sure the verified payload is the
// one parseToken decoded, so that no unverified claim survives.
func (is *issuer) verifySignature(ctx context.Context, t *parsedToken) *Error {
	if !slices.Contains(is.cfg.Algorithms, t.alg) {
		return fail(ReasonTokenSignature, errAlgorithm)
	}

	out := &sigOutcome{}
	ctx = context.WithValue(ctx, sigOutcomeKey{}, out)
	_, err := is.oidc.Verify(ctx, string(t.raw))
	if out.err != nil {
		return out.err
	}
	if err != nil {
		return fail(ReasonTokenMalformed, fmt.Errorf("go-oidc: %w", err))
	}
	if !bytes.Equal(out.payload, t.payload) {
		return fail(ReasonTokenMalformed, errors.New("verified payload differs from decoded"))
	}
	return nil
}

// checkAccessType refuses what is not an access token. typ at+jwt (RFC
// 9068) is one. typ JWT or no typ (Okta, Auth0, Keycloak, Entra) is one
// only with an access token's shape: an ID token has a nonce or an at_hash.
// Any other typ is refused, and so is everything but at+jwt when the issuer
// requires it.
func checkAccessType(cfg IssuerConfig, t *parsedToken) *Error {
	switch strings.ToLower(t.typ) {
	case "at+jwt", "application/at+jwt":
		return nil
	case "", "jwt", "application/jwt":
	default:
		return fail(ReasonTokenType, errors.New("typ is not an access token's"))
	}
	if cfg.RequireATJWT {
		return fail(ReasonTokenType, errors.New("issuer requires typ at+jwt"))
	}
	for _, name := range []string{"nonce", "at_hash"} {
		if _, ok := t.claims[name]; ok {
			return fail(ReasonTokenType, fmt.Errorf("claim %s: an ID token, not an access token", name))
		}
	}
	return nil
}

// accessIdentity checks audience, subject and client, and reads the
// identity from the verified claims.
func accessIdentity(cfg IssuerConfig, claims map[string]any) (Identity, *Error) {
	aud, err := audienceClaim(claims)
	if err != nil {
		return Identity{}, fail(ReasonTokenMalformed, err)
	}
	if !slices.Contains(aud, cfg.Audience) {
		return Identity{}, fail(ReasonTokenAudience, errors.New("aud lacks the API audience"))
	}
	return readIdentity(cfg, claims)
}

// InsecureUnverifiedIdentity reads the identity a token would have if it
// verified, WITHOUT checking its signature, issuer, audience, times or
// type. It exists for offline tooling (tierguard check --token) that asks
// "what would this token get"; anything that grants access must use
// Verify. The claims are read exactly as Verify reads them.
func InsecureUnverifiedIdentity(token string) (Identity, error) {
	t, e := parseToken(token)
	if e != nil {
		return Identity{}, e
	}
	iss, _ := optionalString(t.claims, "iss")
	id, e := readIdentity(IssuerConfig{Issuer: iss}, t.claims)
	if e != nil {
		return Identity{}, e
	}
	return id, nil
}

// readIdentity reads subject, client, scopes and groups from claims, and
// checks the client against cfg's list when it has one.
func readIdentity(cfg IssuerConfig, claims map[string]any) (Identity, *Error) {
	sub, err := stringClaim(claims, "sub")
	if err == nil && sub == "" {
		err = errors.New("claim sub is missing")
	}
	if err != nil {
		return Identity{}, fail(ReasonTokenMalformed, err)
	}
	id := Identity{Authenticated: true, Issuer: cfg.Issuer, Subject: sub, Claims: claims}

	client, e := clientOf(claims)
	if e != nil {
		return id, e
	}
	if len(cfg.ClientIDs) > 0 && !slices.Contains(cfg.ClientIDs, client) {
		return id, fail(ReasonTokenClient, errors.New("client not allowed"))
	}
	id.ClientID = client

	if id.Scopes, err = scopesClaim(claims); err != nil {
		return id, fail(ReasonTokenMalformed, err)
	}
	if groups, ok := claims["groups"].([]any); ok {
		id.Groups, _ = stringSlice(groups)
	}
	return id, nil
}

// clientOf reads the client from Okta's cid, RFC 9068's client_id or azp.
// When several are present they must agree.
func clientOf(claims map[string]any) (string, *Error) {
	client := ""
	for _, name := range []string{"cid", "client_id", "azp"} {
		s, err := stringClaim(claims, name)
		if err != nil {
			return "", fail(ReasonTokenMalformed, err)
		}
		if s == "" {
			continue
		}
		if client != "" && s != client {
			return "", fail(ReasonTokenClient, errors.New("client claims disagree"))
		}
		client = s
	}
	return client, nil
}

// verifyIDToken verifies the X-ID-Token as an ID token of an allowed client
// of the access token's issuer, and binds it to the access token: its sub
// must equal the access token's sub, or its uid (Okta names the user by
// login in one and by id in the other). Every failure is id_token_mismatch
// wrapping the precise one. The nonce cannot be checked here (the server
// never saw the authorization request); the binding is what stops a stolen
// ID token from decorating someone else's access token.
func (v *Verifier) verifyIDToken(ctx context.Context, access Identity,
	raw string) (map[string]any, *Error) {
	t, e := parseToken(raw)
	if e == nil {
		e = v.checkIDToken(ctx, access, t)
	}
	if e == nil {
		return t.claims, nil
	}

	outer := fail(ReasonIDTokenMismatch, e)
	outer.Issuer, outer.Subject = access.Issuer, access.Subject
	if t != nil {
		outer.KeyID = clip(t.kid)
	}
	return nil, outer
}

// errNotBound is an ID token whose sub is neither the access token's sub
// nor its uid.
var errNotBound = errors.New("ID token sub is not the access token's sub or uid")

// checkIDToken is verifyIDToken's list of checks.
func (v *Verifier) checkIDToken(ctx context.Context, access Identity, t *parsedToken) *Error {
	iss, err := stringClaim(t.claims, "iss")
	if err != nil || iss != access.Issuer {
		return fail(ReasonTokenIssuer, errors.New("ID token iss differs from the access token's"))
	}
	is := v.byIssuer[iss]

	if e := is.verifySignature(ctx, t); e != nil {
		return e
	}
	switch strings.ToLower(t.typ) {
	case "", "jwt", "application/jwt":
	default:
		return fail(ReasonTokenType, errors.New("typ is not an ID token's"))
	}
	if _, e := (timeChecks{now: v.opts.Now(), skew: is.cfg.ClockSkew}).check(t.claims); e != nil {
		return e
	}
	if e := checkIDTokenClient(is.cfg, t.claims); e != nil {
		return e
	}

	sub, err := stringClaim(t.claims, "sub")
	if err != nil || sub == "" {
		return fail(ReasonTokenMalformed, errors.New("ID token sub missing or not a string"))
	}
	uid, _ := access.Claims["uid"].(string)
	if sub != access.Subject && (uid == "" || sub != uid) {
		return fail(ReasonIDTokenMismatch, errNotBound)
	}
	return nil
}

// checkIDTokenClient requires the ID token's aud to name an allowed client
// (OIDC Core 3.1.3.7): with several audiences, azp must be present and
// allowed too. With no client configured, every ID token is refused.
func checkIDTokenClient(cfg IssuerConfig, claims map[string]any) *Error {
	aud, err := audienceClaim(claims)
	if err != nil {
		return fail(ReasonTokenMalformed, err)
	}
	azp, err := stringClaim(claims, "azp")
	if err != nil {
		return fail(ReasonTokenMalformed, err)
	}

	allowed := slices.ContainsFunc(aud, func(a string) bool {
		return slices.Contains(cfg.ClientIDs, a)
	})
	if !allowed {
		return fail(ReasonTokenAudience, errors.New("ID token aud names no allowed client"))
	}
	if (len(aud) > 1 || azp != "") && !slices.Contains(cfg.ClientIDs, azp) {
		return fail(ReasonTokenClient, errors.New("ID token azp missing or not allowed"))
	}
	return nil
}
