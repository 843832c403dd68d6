package identity

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Limits DESIGN.md fixes for every issuer. They are the defaults a zero
// IssuerConfig or Options gets; configuration may tighten most of them.
const (
	// DefaultClockSkew is how far exp, nbf and iat may disagree with our clock.
	DefaultClockSkew = 60 * time.Second
	// DefaultMaxKeyAge is how long the last good keys keep verifying while
	// the JWKS cannot be fetched. Past it the issuer is unavailable (503):
	// keys the issuer may have revoked must not verify forever.
	DefaultMaxKeyAge = time.Hour
	// DefaultRefetchCooldown bounds JWKS fetches per issuer, whatever
	// triggers them, so a flood of unknown key ids cannot make us flood
	// the issuer.
	DefaultRefetchCooldown = 30 * time.Second
	// DefaultRefreshInterval is the periodic JWKS refresh: a key removed
	// from the issuer's JWKS stops verifying within about this long.
	DefaultRefreshInterval = 10 * time.Minute
	// MaxTokenSize is the largest token, in bytes, that is even looked at.
	MaxTokenSize = 16 << 10
	// maxClockSkew refuses configurations that would quietly extend every
	// token's life by more than a few minutes.
	maxClockSkew = 5 * time.Minute
)

// defaultAlgorithms are the signing algorithms an issuer gets when its
// configuration names none: what Okta, Auth0, Keycloak and Entra use.
var defaultAlgorithms = []string{"RS256", "ES256"}

// asymmetricAlgorithms are the only algorithms a configuration may name.
// Symmetric (HS*) algorithms would let anyone holding the issuer's public
// key mint tokens, and "none" needs no key at all.
var asymmetricAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// IssuerConfig is one trusted token issuer. The zero value of every
// optional field is the strict default; Validate says what is required.
type IssuerConfig struct {
	// Issuer is the issuer URL, compared byte for byte with the discovery
	// document's "issuer" and with every token's "iss": a trailing slash
	// matters. Discovery is read at Issuer+"/.well-known/openid-configuration".
	Issuer string `json:"issuer"`
	// Audience is the API's audience (Okta: "api://default"). Required: a
	// verifier without one would accept tokens minted for any other API.
	Audience string `json:"audience"`
	// ClientIDs are the clients whose tokens are accepted (cid, client_id
	// or azp). Empty means any client for access tokens; ID tokens need an
	// aud in this list, so with an empty list every ID token is refused.
	ClientIDs []string `json:"client_ids"`
	// Algorithms allowed for signatures; RS256 and ES256 when empty.
	// Asymmetric algorithms only: anything else is a configuration error.
	Algorithms []string `json:"algorithms"`
	// ClockSkew tolerated on exp, nbf and iat; 60 s when zero, at most 5 min.
	ClockSkew time.Duration `json:"clock_skew"`
	// RequireATJWT accepts only RFC 9068 access tokens (typ at+jwt), and
	// refuses the typ-less tokens of Okta and the typ JWT ones of others.
	RequireATJWT bool `json:"require_at_jwt"`
	// MaxKeyAge is how long the last good keys serve through a JWKS outage;
	// 1 h when zero. Then the issuer is unavailable (503 issuer_unavailable).
	MaxKeyAge time.Duration `json:"max_key_age"`
}

// Validate reports the first problem with c. An http:// issuer is accepted
// only on a loopback address (127.0.0.0/8, ::1, localhost): over a network
// plain HTTP would let anyone on the path replace the keys.
func (c IssuerConfig) Validate() error {
	if err := checkIssuerURL(c.Issuer); err != nil {
		return fmt.Errorf("identity: issuer %q: %w", c.Issuer, err)
	}
	if c.Audience == "" {
		return fmt.Errorf("identity: issuer %q: audience is required", c.Issuer)
	}
	if slices.Contains(c.ClientIDs, "") {
		return fmt.Errorf("identity: issuer %q: empty client id", c.Issuer)
	}
	for _, alg := range c.Algorithms {
		if !slices.Contains(asymmetricAlgorithms, alg) {
			return fmt.Errorf("identity: issuer %q: algorithm %q is not an allowed "+
				"asymmetric signing algorithm", c.Issuer, alg)
		}
	}
	if c.ClockSkew < 0 || c.ClockSkew > maxClockSkew {
		return fmt.Errorf("identity: issuer %q: clock skew %v is outside 0..%v",
			c.Issuer, c.ClockSkew, maxClockSkew)
	}
	if c.MaxKeyAge < 0 {
		return fmt.Errorf("identity: issuer %q: negative max key age", c.Issuer)
	}
	return nil
}

// withDefaults returns c with its zero optional fields set to the defaults.
func (c IssuerConfig) withDefaults() IssuerConfig {
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(defaultAlgorithms)
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.MaxKeyAge == 0 {
		c.MaxKeyAge = DefaultMaxKeyAge
	}
	c.ClientIDs = slices.Clone(c.ClientIDs)
	return c
}

// errInsecureScheme is the reason a non-loopback http:// URL is refused.
var errInsecureScheme = errors.New("http:// is allowed only on a loopback address; use https://")

// checkIssuerURL accepts an absolute https URL, or http on loopback, with
// no user info, query or fragment (an issuer identifier has none).
func checkIssuerURL(raw string) error {
	u, err := parseAbsolute(raw)
	if err != nil {
		return err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return errors.New("URL must have no query")
	}
	return checkScheme(u)
}

// checkFetchURL accepts a URL we may fetch keys from: like an issuer, but
// a query is allowed.
func checkFetchURL(raw string) error {
	u, err := parseAbsolute(raw)
	if err != nil {
		return err
	}
	return checkScheme(u)
}

// parseAbsolute parses an absolute URL with no user info or fragment.
func parseAbsolute(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing URL: %w", err)
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, errors.New("URL must be absolute")
	}
	if u.User != nil || u.Fragment != "" {
		return nil, errors.New("URL must have no user info or fragment")
	}
	return u, nil
}

// checkScheme accepts https, and http on a loopback host only.
func checkScheme(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errInsecureScheme
	default:
		return fmt.Errorf("URL scheme %q is not https", u.Scheme)
	}
}

// isLoopbackHost reports whether host (no port, no brackets) is a loopback
// address or the name localhost.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Options are the verifier's process-wide settings. The zero value is
// usable: every field has a default.
type Options struct {
	// HTTPClient fetches discovery documents and key sets. The default has
	// a 10 s timeout; responses are read up to 1 MiB whatever the client.
	HTTPClient *http.Client
	// Logger receives lifecycle and key-set events; never tokens.
	Logger *slog.Logger
	// Now is the clock for token times and key ages; time.Now by default.
	Now func() time.Time
	// RefetchCooldown is the least time between two JWKS fetches of one
	// issuer, whatever triggers them (unknown kid, bad signature, periodic
	// refresh, an outage's retries); 30 s when zero.
	RefetchCooldown time.Duration
	// RefreshInterval is the periodic JWKS refresh; 10 min when zero.
	// Background waits use the real clock, key ages use Now.
	RefreshInterval time.Duration
}

// withDefaults fills the zero fields of o.
func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefetchCooldown == 0 {
		o.RefetchCooldown = DefaultRefetchCooldown
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	return o
}
