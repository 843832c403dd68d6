package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// maxResponseSize bounds a discovery document or a JWKS.
const maxResponseSize = 1 << 20

// fetchTimeout bounds one discovery or JWKS request whatever the client.
const fetchTimeout = 10 * time.Second

// errIssuerMismatch marks an issuer whose discovery document names another
// issuer. It stays unusable: the configuration or the issuer is wrong, and
// guessing which would be trusting the wrong keys.
var errIssuerMismatch = errors.New("discovery document names a different issuer")

// keySet holds one issuer's discovery result and signing keys, and is that
// issuer's oidc.KeySet. It replaces go-oidc's RemoteKeySet, which refetches
// the JWKS on every unknown kid and every failed signature with no bound:
// here every fetch, whatever triggers it, is at least cooldown after the
// previous one, and keys older than maxKeyAge stop verifying.
type keySet struct {
	issuer    string
	algs      []jose.SignatureAlgorithm
	maxKeyAge time.Duration
	cooldown  time.Duration
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger
	changed   func(issuer string)

	fetches atomic.Int64

	mu          sync.Mutex
	jwksURL     string
	mismatch    bool
	discoverErr error
	fetchErr    error
	keys        []jose.JSONWebKey
	fingerprint string
	fetchedAt   time.Time
	lastFetch   time.Time
	inflight    *fetchCall
	expired     bool
}

// fetchCall is one JWKS fetch that several verifications may wait for.
type fetchCall struct {
	done chan struct{}
	err  error
}

// sigOutcome carries the key set's result out through go-oidc, which
// flattens errors to text: the verifier reads the reason from here.
type sigOutcome struct {
	payload []byte
	err     *Error
}

type sigOutcomeKey struct{}

// VerifySignature implements oidc.KeySet: it verifies jwt with this
// issuer's keys only. The kid only picks among them; a key the token
// carries or points to is never used (parseToken refuses such tokens
// before they get here).
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, e := k.verify(ctx, jwt)
	out, _ := ctx.Value(sigOutcomeKey{}).(*sigOutcome)
	if out != nil {
		out.payload, out.err = payload, e
	}
	if e != nil {
		return nil, e
	}
	return payload, nil
}

// verify checks the signature, refetching the JWKS (within the cooldown)
// when no cached key verifies: an unknown kid usually means a rotation.
func (k *keySet) verify(ctx context.Context, jwt string) ([]byte, *Error) {
	jws, err := jose.ParseSigned(jwt, k.algs)
	if err != nil {
		return nil, fail(ReasonTokenSignature, fmt.Errorf("parsing JWS: %w", err))
	}
	if len(jws.Signatures) != 1 {
		return nil, fail(ReasonTokenMalformed, errors.New("not exactly one signature"))
	}
	header := jws.Signatures[0].Header

	keys, ok := k.usableKeys()
	if !ok {
		k.refresh(ctx)
		if keys, ok = k.usableKeys(); !ok {
			return nil, fail(ReasonIssuerUnavailable, errNoKeys)
		}
	}
	payload, found := verifyWith(jws, keys, header.KeyID, header.Algorithm)
	if payload != nil {
		return payload, nil
	}

	if fetched, _ := k.refresh(ctx); fetched {
		if keys, ok = k.usableKeys(); !ok {
			return nil, fail(ReasonIssuerUnavailable, errNoKeys)
		}
		payload, found = verifyWith(jws, keys, header.KeyID, header.Algorithm)
		if payload != nil {
			return payload, nil
		}
	}
	if !found {
		return nil, fail(ReasonTokenUnknownKey, errUnknownKey)
	}
	return nil, fail(ReasonTokenSignature, errBadSignature)
}

// verifyWith tries the keys that kid selects and whose type and alg fit.
// found reports whether kid selected any key, to tell an unknown key from a
// bad signature. A key published without a kid may verify any token.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey,
	kid, alg string) (payload []byte, found bool) {
	for _, key := range keys {
		if kid != "" && key.KeyID != "" && key.KeyID != kid {
			continue
		}
		found = true
		if !keyFits(key, alg) {
			continue
		}
		if p, err := jws.Verify(key.Key); err == nil {
			return p, true
		}
	}
	return nil, found
}

// keyFits reports whether key may verify a signature made with alg: the
// key's own alg, when it names one, must agree, and so must its type.
func keyFits(key jose.JSONWebKey, alg string) bool {
	if key.Algorithm != "" && key.Algorithm != alg {
		return false
	}
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		curves := map[string]elliptic.Curve{
			"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521(),
		}
		return curves[alg] == pub.Curve
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// usableKeys returns the cached keys unless there are none or they are
// older than maxKeyAge.
func (k *keySet) usableKeys() ([]jose.JSONWebKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, k.keysUsableLocked(k.now())
}

func (k *keySet) keysUsableLocked(now time.Time) bool {
	return len(k.keys) > 0 && now.Sub(k.fetchedAt) <= k.maxKeyAge
}

// refresh fetches the JWKS unless one was fetched less than the cooldown
// ago, or joins a fetch in flight. fetched reports whether a fetch ran (and
// err is its result); when the cooldown forbade one, err is the last fetch's
// result. The fetch itself is detached from ctx, so a caller giving up does
// not cancel it for the others waiting; ctx bounds only the wait.
func (k *keySet) refresh(ctx context.Context) (fetched bool, err error) {
	k.mu.Lock()
	call := k.inflight
	if call == nil {
		now := k.now()
		if k.jwksURL == "" || k.mismatch {
			k.mu.Unlock()
			return false, errNoKeys
		}
		if !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < k.cooldown {
			err := k.fetchErr
			k.mu.Unlock()
			return false, err
		}
		k.lastFetch = now
		call = &fetchCall{done: make(chan struct{})}
		k.inflight = call
		go k.fetch(call, k.jwksURL)
	}
	k.mu.Unlock()

	select {
	case <-call.done:
		return true, call.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// fetch runs one JWKS fetch and stores its result.
func (k *keySet) fetch(call *fetchCall, jwksURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	keys, err := k.fetchKeys(ctx, jwksURL)

	k.mu.Lock()
	k.inflight = nil
	k.fetchErr = err
	fp := fingerprint(keys)
	changed := err == nil && fp != k.fingerprint && k.fingerprint != ""
	if err == nil {
		k.keys, k.fingerprint, k.fetchedAt, k.expired = keys, fp, k.now(), false
	}
	hadKeys := len(k.keys) > 0
	k.mu.Unlock()

	call.err = err
	close(call.done)

	switch {
	case err != nil && hadKeys:
		k.log.Warn("jwks fetch failed, serving cached keys", "iss", k.issuer, "err", err)
	case err != nil:
		k.log.Warn("jwks fetch failed", "iss", k.issuer, "err", err)
	case changed:
		k.log.Info("jwks changed", "iss", k.issuer, "keys", len(keys))
		k.changed(k.issuer)
	}
}

// fetchKeys GETs and parses the JWKS.
func (k *keySet) fetchKeys(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, fmt.Errorf("building jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("Cache-Control", "no-cache")

	k.fetches.Add(1)
	body, err := readResponse(k.client, req)
	if err != nil {
		return nil, fmt.Errorf("fetching jwks: %w", err)
	}
	return parseJWKS(body)
}

// readResponse does req and returns a 200 response's body, refusing
// redirects and bodies over maxResponseSize.
func readResponse(client *http.Client, req *http.Request) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("unexpected status %s", resp.Status)
	}
	if len(body) > maxResponseSize {
		return nil, errors.New("response larger than 1 MiB")
	}
	return body, nil
}

// parseJWKS keeps the JWKS's public, asymmetric signing keys. Keys it
// cannot use (encryption keys, symmetric keys, unknown types or algs) are
// skipped, as RFC 7517 section 5 asks; a private key published by mistake
// is reduced to its public half. A set with no usable key is an error, so
// that a broken JWKS does not replace good keys with none.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding jwks: %w", err)
	}

	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		if key.Algorithm != "" && !slices.Contains(asymmetricAlgorithms, key.Algorithm) {
			continue
		}
		if !key.IsPublic() {
			key = key.Public()
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks has no usable signing key")
	}
	return keys, nil
}

// fingerprint identifies a key set by its keys' kids and thumbprints, in
// order, to notice a change.
func fingerprint(keys []jose.JSONWebKey) string {
	var b strings.Builder
	for _, key := range keys {
		tp, _ := key.Thumbprint(crypto.SHA256)
		b.WriteString(key.KeyID)
		b.WriteByte('/')
		b.WriteString(base64.RawURLEncoding.EncodeToString(tp))
		b.WriteByte(' ')
	}
	return b.String()
}

// discover reads the discovery document with go-oidc, which compares its
// issuer with ours byte for byte, and records the jwks_uri.
func (k *keySet) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, k.client), k.issuer)

	var mismatch *oidc.IssuerMismatchError
	if errors.As(err, &mismatch) {
		k.mu.Lock()
		k.mismatch = true
		k.mu.Unlock()
		k.log.Error("issuer unusable: discovery document names a different issuer",
			"iss", k.issuer, "discovered_iss", mismatch.Discovered)
		return errIssuerMismatch
	}
	if err == nil {
		err = k.setJWKSURL(provider)
	}
	if err != nil {
		err = fmt.Errorf("discovery: %w", err)
	}

	k.mu.Lock()
	k.discoverErr = err
	k.mu.Unlock()
	return err
}

// setJWKSURL takes jwks_uri from the discovery document; it must be https
// or loopback http, like the issuer.
func (k *keySet) setJWKSURL(provider *oidc.Provider) error {
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil {
		return err
	}
	if err := checkFetchURL(meta.JWKSURI); err != nil {
		return fmt.Errorf("jwks_uri: %w", err)
	}

	k.mu.Lock()
	k.jwksURL = meta.JWKSURI
	k.mu.Unlock()
	return nil
}

// discovered reports whether discovery succeeded, and whether it never will.
func (k *keySet) discovered() (ok, mismatch bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.jwksURL != "", k.mismatch
}

// run discovers the issuer and keeps its keys fresh until ctx is done:
// retries with exponential backoff while failing, a refresh every interval
// when not. Fetches still wait out the cooldown, whatever the backoff says.
func (k *keySet) run(ctx context.Context, interval time.Duration) {
	failures := 0
	for {
		err := k.sync(ctx)
		if errors.Is(err, errIssuerMismatch) {
			return
		}
		delay := interval
		if err != nil {
			failures++
			delay = backoff(failures, interval)
		} else {
			failures = 0
		}

		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// sync is one round of run: discovery if needed, then a JWKS fetch unless
// the cooldown forbids one, then the key-age check.
func (k *keySet) sync(ctx context.Context) error {
	ok, mismatch := k.discovered()
	if mismatch {
		return errIssuerMismatch
	}
	if !ok {
		if err := k.discover(ctx); err != nil {
			k.log.Warn("issuer discovery failed", "iss", k.issuer, "err", err)
			return err
		}
	}
	_, err := k.refresh(ctx)
	k.checkAge()
	return err
}

// checkAge logs, once, that the keys have outlived maxKeyAge, and tells the
// listeners: cached verifications must go too.
func (k *keySet) checkAge() {
	k.mu.Lock()
	expired := len(k.keys) > 0 && !k.expired && !k.keysUsableLocked(k.now())
	if expired {
		k.expired = true
	}
	k.mu.Unlock()

	if expired {
		k.log.Error("issuer unavailable: keys older than max_key_age and jwks unreachable",
			"iss", k.issuer)
		k.changed(k.issuer)
	}
}

// backoff is 1 s doubling per failure, capped at a minute and at interval.
func backoff(failures int, interval time.Duration) time.Duration {
	d := time.Second << min(failures-1, 6)
	return min(d, time.Minute, interval)
}

// IssuerStatus is one issuer's readiness, for /health/ready. Detail is a
// fixed phrase, safe to show: never an error text or a URL.
type IssuerStatus struct {
	Issuer        string    `json:"issuer"`
	Ready         bool      `json:"ready"`
	Detail        string    `json:"detail"`
	KeysFetchedAt time.Time `json:"keys_fetched_at,omitzero"`
}

// status reports readiness at now.
func (k *keySet) status() IssuerStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := IssuerStatus{Issuer: k.issuer, KeysFetchedAt: k.fetchedAt}

	switch {
	case k.mismatch:
		s.Detail = "discovery document names a different issuer; fix the configuration"
	case k.keysUsableLocked(k.now()) && k.fetchErr != nil:
		s.Ready, s.Detail = true, "serving cached keys; key set refresh failing"
	case k.keysUsableLocked(k.now()):
		s.Ready, s.Detail = true, "ready"
	case len(k.keys) > 0:
		s.Detail = "keys older than max_key_age; key set unreachable"
	case k.jwksURL == "" && k.discoverErr != nil:
		s.Detail = "discovery failed; retrying"
	case k.jwksURL == "":
		s.Detail = "waiting for discovery"
	case k.fetchErr != nil:
		s.Detail = "fetching keys failed; retrying"
	default:
		s.Detail = "waiting for keys"
	}
	return s
}

// strictClient copies c so that it follows no redirect (discovery and keys
// come from the configured and discovered URLs, nowhere else), has a
// timeout, and reads at most maxResponseSize of any body, go-oidc's
// discovery included.
func strictClient(c *http.Client) *http.Client {
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}
	if cp.Timeout == 0 {
		cp.Timeout = fetchTimeout
	}
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = limitedTransport{base: base}
	return &cp
}

// limitedTransport cuts every response body at maxResponseSize+1 bytes, so
// that an oversized document fails to parse instead of filling memory.
type limitedTransport struct {
	base http.RoundTripper
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{
		Reader: io.LimitReader(resp.Body, maxResponseSize+1),
		Closer: resp.Body,
	}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
