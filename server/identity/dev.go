package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"
)

// Names the dev issuer gives its API and its client. The verifier trusts
// exactly these for the dev issuer (see DevIssuer.IssuerConfig).
const (
	DevAudience = "api://tierguard-dev"
	DevClientID = "tierguard-dev"
)

// Dev token limits.
const (
	devDefaultSub       = "dev-user"
	devDefaultExpiresIn = 3600
	devMaxExpiresIn     = 86400
	devMaxBody          = 4 << 10
	devMaxString        = 128
	devMaxList          = 32
)

// DevIssuer is the OpenID issuer inside `tierguard serve --dev`: an RS256
// key pair made at start, discovery and JWKS under the issuer path, and a
// token endpoint that mints tokens of any tier for anyone who asks. That is
// its danger: it must never be reachable beyond loopback, and
// NewDevIssuer refuses any other address.
//
// Its access tokens look like Okta's (no typ header; cid, uid, scp, groups
// and a custom tier claim; aud api://tierguard-dev) and its ID tokens like
// Okta's ID tokens (aud the client id, sub the uid), so the dev setup
// exercises the typ-less access-token path that production Okta uses. The
// verifier checks them exactly as it checks any issuer's: through discovery
// and the JWKS, over HTTP.
type DevIssuer struct {
	issuer string
	path   string
	kid    string
	key    *rsa.PrivateKey
	signer jose.Signer
	now    func() time.Time
}

// NewDevIssuer makes a dev issuer for issuerURL, e.g.
// "http://127.0.0.1:8080/dev": a loopback host, a path and no trailing
// slash. The key pair is made here and lives only in memory.
func NewDevIssuer(issuerURL string) (*DevIssuer, error) {
	u, err := url.Parse(issuerURL)
	if err != nil {
		return nil, fmt.Errorf("identity: dev issuer: parsing URL: %w", err)
	}
	if err := checkDevURL(u); err != nil {
		return nil, fmt.Errorf("identity: dev issuer %q: %w", issuerURL, err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("identity: dev issuer: making key: %w", err)
	}
	kid := "dev-" + randomID(8)
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("identity: dev issuer: making signer: %w", err)
	}
	return &DevIssuer{
		issuer: issuerURL, path: u.Path, kid: kid, key: key, signer: signer, now: time.Now,
	}, nil
}

// checkDevURL accepts http(s) on a loopback host with a plain path.
func checkDevURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if !isLoopbackHost(u.Hostname()) {
		return errors.New("dev issuer must be on a loopback address")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return errors.New("URL must have no user info, query or fragment")
	}
	if u.Path == "" || strings.HasSuffix(u.Path, "/") || u.RawPath != "" {
		return errors.New("URL needs a path without trailing slash, like /dev")
	}
	for _, c := range u.Path {
		if !(c < unicode.MaxASCII && (isBase64URL(byte(c)) || c == '/' || c == '.')) {
			return errors.New("path may hold only letters, digits, '-', '_', '.' and '/'")
		}
	}
	return nil
}

// IssuerConfig is the configuration the verifier should trust the dev
// issuer with.
func (d *DevIssuer) IssuerConfig() IssuerConfig {
	return IssuerConfig{
		Issuer:     d.issuer,
		Audience:   DevAudience,
		ClientIDs:  []string{DevClientID},
		Algorithms: []string{"RS256"},
	}
}

// Handler serves the dev issuer at its full paths, for mounting on the
// server's mux as is: GET <path>/.well-known/openid-configuration, GET
// <path>/keys and POST <path>/token.
func (d *DevIssuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+d.path+"/.well-known/openid-configuration", d.serveDiscovery)
	mux.HandleFunc("GET "+d.path+"/keys", d.serveKeys)
	mux.HandleFunc("POST "+d.path+"/token", d.serveToken)
	return mux
}

func (d *DevIssuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                d.issuer,
		"jwks_uri":                              d.issuer + "/keys",
		"token_endpoint":                        d.issuer + "/token",
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (d *DevIssuer) serveKeys(w http.ResponseWriter, _ *http.Request) {
	key := jose.JSONWebKey{Key: &d.key.PublicKey, KeyID: d.kid, Algorithm: "RS256", Use: "sig"}
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key}})
}

// serveToken mints tokens from a small JSON body; an empty body gets the
// defaults (sub dev-user, one hour).
func (d *DevIssuer) serveToken(w http.ResponseWriter, r *http.Request) {
	// application/json only: a browser cannot send it cross-site without
	// a CORS preflight, so another site's page cannot mint tokens here.
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		writeOAuthError(w, errors.New("send the token request as application/json"))
		return
	}
	var req TokenRequest
	body := http.MaxBytesReader(w, r.Body, devMaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == io.EOF {
		err = nil
	} else if err == nil && dec.More() {
		err = errors.New("body holds more than one JSON value")
	}
	if err != nil {
		// The decoder's own text names Go types; say what is wanted instead.
		writeOAuthError(w, errors.New(`body is not one JSON token request of at most 4 KiB: `+
			`{"sub", "tier", "groups", "scopes", "expires_in"}`))
		return
	}

	resp, err := d.Mint(req)
	if err != nil {
		writeOAuthError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// TokenRequest asks the dev issuer for tokens. Zero fields get defaults:
// sub "dev-user", scopes openid profile email, one hour.
type TokenRequest struct {
	Sub       string   `json:"sub"`
	Tier      string   `json:"tier"`
	Groups    []string `json:"groups"`
	Scopes    []string `json:"scopes"`
	ExpiresIn int      `json:"expires_in"`
}

// TokenResponse is the token endpoint's answer, shaped like OAuth's.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// Mint makes an access token and an ID token for req. The access token has
// a tier claim only when req names one, and groups only when req has some.
func (d *DevIssuer) Mint(req TokenRequest) (TokenResponse, error) {
	if err := req.normalize(); err != nil {
		return TokenResponse{}, fmt.Errorf("identity: dev token: %w", err)
	}
	now := d.now().Unix()
	exp := now + int64(req.ExpiresIn)
	uid := devUID(req.Sub)

	access := map[string]any{
		"ver": 1, "jti": "AT." + randomID(16), "iss": d.issuer, "aud": DevAudience,
		"sub": req.Sub, "iat": now, "exp": exp, "auth_time": now,
		"cid": DevClientID, "uid": uid, "scp": req.Scopes,
	}
	if len(req.Groups) > 0 {
		access["groups"] = req.Groups
	}
	if req.Tier != "" {
		access["tier"] = req.Tier
	}
	accessToken, err := d.sign(access)
	if err != nil {
		return TokenResponse{}, err
	}

	idClaims := map[string]any{
		"ver": 1, "jti": "ID." + randomID(16), "iss": d.issuer, "aud": DevClientID,
		"sub": uid, "iat": now, "exp": exp, "auth_time": now, "amr": []string{"pwd"},
		"name": req.Sub, "preferred_username": req.Sub, "email": devEmail(req.Sub),
		"at_hash": atHash(accessToken),
	}
	idToken, err := d.sign(idClaims)
	if err != nil {
		return TokenResponse{}, err
	}
	return TokenResponse{
		AccessToken: accessToken, IDToken: idToken, TokenType: "Bearer", ExpiresIn: req.ExpiresIn,
	}, nil
}

// normalize applies the defaults and the limits.
func (req *TokenRequest) normalize() error {
	if req.Sub == "" {
		req.Sub = devDefaultSub
	}
	if req.ExpiresIn == 0 {
		req.ExpiresIn = devDefaultExpiresIn
	}
	if req.Scopes == nil {
		req.Scopes = []string{"openid", "profile", "email"}
	}
	if req.ExpiresIn < 1 || req.ExpiresIn > devMaxExpiresIn {
		return fmt.Errorf("expires_in must be 1..%d seconds", devMaxExpiresIn)
	}
	if err := checkDevString("sub", req.Sub); err != nil {
		return err
	}
	if req.Tier != "" {
		if err := checkDevString("tier", req.Tier); err != nil {
			return err
		}
	}
	for _, list := range []struct {
		name   string
		values []string
	}{{"groups", req.Groups}, {"scopes", req.Scopes}} {
		if len(list.values) > devMaxList {
			return fmt.Errorf("%s: at most %d values", list.name, devMaxList)
		}
		for _, v := range list.values {
			if err := checkDevString(list.name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDevString accepts 1..128 printable characters, no spaces (a scope
// with a space would become two in an RFC 9068 scope string).
func checkDevString(name, s string) error {
	if s == "" || len(s) > devMaxString {
		return fmt.Errorf("%s: values must be 1..%d bytes", name, devMaxString)
	}
	for _, c := range s {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return fmt.Errorf("%s: values must be printable, without spaces", name)
		}
	}
	return nil
}

func (d *DevIssuer) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("identity: dev token: encoding claims: %w", err)
	}
	jws, err := d.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("identity: dev token: signing: %w", err)
	}
	return jws.CompactSerialize()
}

// devUID derives a stable Okta-like user id from sub, so one dev user keeps
// one uid across tokens and restarts.
func devUID(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return "00u" + hex.EncodeToString(sum[:8])
}

func devEmail(sub string) string {
	if strings.Contains(sub, "@") {
		return sub
	}
	return sub + "@dev.invalid"
}

// atHash is OIDC Core's at_hash for an RS256-signed access token.
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeOAuthError answers 400 invalid_request (RFC 6749 section 5.2). The
// description is our own validation text, never a token.
func writeOAuthError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]string{
		"error": "invalid_request", "error_description": err.Error(),
	})
}
