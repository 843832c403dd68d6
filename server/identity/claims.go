package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting in a token's header and claims.
const maxJSONDepth = 32

// parsedToken is a JWT decoded once, strictly, before its signature is
// checked. Nothing in it may be trusted until the signature is: the
// verifier uses the unverified iss only to choose which configured issuer's
// keys to try.
type parsedToken struct {
	raw     Token
	alg     string
	kid     string
	typ     string
	payload []byte
	claims  map[string]any
}

// headerKeySources are JOSE header parameters that name a key or where to
// fetch one. Only the issuer's JWKS signs; a token carrying its own key is
// refused outright (token_signature) rather than merely ignored.
var headerKeySources = []string{"jwk", "jku", "x5u", "x5c"}

// parseToken checks the token's shape and decodes its header and claims.
// Duplicate or case-variant names anywhere, invalid UTF-8, a non-object, a
// crit header (we understand no extension) are token_malformed; a header
// that carries a key is token_signature.
func parseToken(raw string) (*parsedToken, *Error) {
	if err := checkShape(raw); err != nil {
		return nil, fail(ReasonTokenMalformed, err)
	}
	parts := strings.Split(raw, ".")

	header, err := decodeSegment(parts[0])
	if err != nil {
		return nil, fail(ReasonTokenMalformed, fmt.Errorf("decoding header: %w", err))
	}
	t := &parsedToken{raw: Token(raw)}
	if err := t.readHeader(header); err != nil {
		return nil, err
	}

	t.payload, err = base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, fail(ReasonTokenMalformed, fmt.Errorf("decoding payload: %w", err))
	}
	t.claims, err = decodeObject(t.payload)
	if err != nil {
		return nil, fail(ReasonTokenMalformed, fmt.Errorf("decoding claims: %w", err))
	}
	return t, nil
}

// readHeader takes alg, kid and typ from the decoded JOSE header.
func (t *parsedToken) readHeader(h map[string]any) *Error {
	if _, ok := h["crit"]; ok {
		return fail(ReasonTokenMalformed, errCritical)
	}
	for _, name := range headerKeySources {
		if _, ok := h[name]; ok {
			e := fail(ReasonTokenSignature, errKeyInHeader)
			e.KeyID = clip(stringOr(h["kid"]))
			return e
		}
	}

	var ok [3]bool
	t.alg, ok[0] = h["alg"].(string)
	t.kid, ok[1] = optionalString(h, "kid")
	t.typ, ok[2] = optionalString(h, "typ")
	if !ok[0] || !ok[1] || !ok[2] {
		e := fail(ReasonTokenMalformed, errors.New("header alg, kid or typ is not a string"))
		e.KeyID = clip(t.kid)
		return e
	}
	return nil
}

// decodeSegment base64url-decodes a segment and strictly decodes the JSON
// object in it.
func decodeSegment(seg string) (map[string]any, error) {
	data, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return nil, err
	}
	return decodeObject(data)
}

// decodeObject decodes a JSON object with a token walk so that it can see
// what encoding/json hides: a repeated name (where json.Unmarshal keeps the
// last value) and names equal but for case (which a case-insensitive
// consumer might merge). Both are refused at every depth. Numbers stay
// json.Number, so large integers keep every digit.
func decodeObject(data []byte) (map[string]any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()

	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	obj, err := decodeObjectBody(dec, 1)
	if err != nil {
		return nil, err
	}

	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

// decodeValue decodes the next JSON value.
func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		return decodeObjectBody(dec, depth)
	case json.Delim('['):
		return decodeArrayBody(dec, depth)
	}
	return tok, nil
}

// decodeObjectBody decodes the members of an object whose '{' was read.
func decodeObjectBody(dec *json.Decoder, depth int) (map[string]any, error) {
	obj := map[string]any{}
	folded := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name := tok.(string) // the decoder allows only strings as names
		if _, dup := obj[name]; dup {
			return nil, errDuplicateClaim
		}
		fold := strings.ToLower(strings.ToUpper(name))
		if folded[fold] {
			return nil, errCaseVariantClaim
		}
		folded[fold] = true

		value, err := decodeValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		obj[name] = value
	}
	_, err := dec.Token() // '}'
	return obj, err
}

// decodeArrayBody decodes the elements of an array whose '[' was read.
func decodeArrayBody(dec *json.Decoder, depth int) ([]any, error) {
	arr := []any{}
	for dec.More() {
		value, err := decodeValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, value)
	}
	_, err := dec.Token() // ']'
	return arr, err
}

// optionalString returns m[name] as a string; ok is false only when the
// member is present with another type.
func optionalString(m map[string]any, name string) (s string, ok bool) {
	v, present := m[name]
	if !present {
		return "", true
	}
	s, ok = v.(string)
	return s, ok
}

// stringOr returns v when it is a string, else "".
func stringOr(v any) string {
	s, _ := v.(string)
	return s
}

// stringClaim returns a string claim; a present claim of another type is
// an error.
func stringClaim(claims map[string]any, name string) (string, error) {
	s, ok := optionalString(claims, name)
	if !ok {
		return "", fmt.Errorf("claim %s is not a string", name)
	}
	return s, nil
}

// numericDate reads a NumericDate claim (RFC 7519 section 2): seconds since
// the epoch, possibly fractional. present is false when the claim is absent.
func numericDate(claims map[string]any, name string) (t time.Time, present bool, err error) {
	v, present := claims[name]
	if !present {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, true, fmt.Errorf("claim %s is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e11 {
		return time.Time{}, true, fmt.Errorf("claim %s is not a usable date", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

// audienceClaim reads aud, a string or an array of strings (RFC 7519
// section 4.1.3).
func audienceClaim(claims map[string]any) ([]string, error) {
	switch aud := claims["aud"].(type) {
	case nil:
		if _, present := claims["aud"]; present {
			return nil, errors.New("claim aud is null")
		}
		return nil, nil
	case string:
		return []string{aud}, nil
	case []any:
		out, ok := stringSlice(aud)
		if !ok {
			return nil, errors.New("claim aud holds a non-string")
		}
		return out, nil
	default:
		return nil, errors.New("claim aud is neither a string nor an array")
	}
}

// stringSlice converts an array of strings; ok is false if one is not.
func stringSlice(arr []any) (out []string, ok bool) {
	out = make([]string, 0, len(arr))
	for _, v := range arr {
		s, isString := v.(string)
		if !isString {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// scopesClaim reads scopes from Okta's scp (array of strings), an scp
// string, or RFC 9068's space-separated scope string, in that order.
func scopesClaim(claims map[string]any) ([]string, error) {
	for _, name := range []string{"scp", "scope"} {
		switch v := claims[name].(type) {
		case nil:
			continue
		case string:
			return strings.Fields(v), nil
		case []any:
			out, ok := stringSlice(v)
			if !ok {
				return nil, fmt.Errorf("claim %s holds a non-string", name)
			}
			return out, nil
		default:
			return nil, fmt.Errorf("claim %s is neither a string nor an array", name)
		}
	}
	return nil, nil
}

// timeChecks are the clock checks common to access and ID tokens.
type timeChecks struct {
	now  time.Time
	skew time.Duration
}

// check requires exp and iat, and refuses a token that expired, or whose
// nbf or iat is in the future, by more than the skew. It returns exp.
func (c timeChecks) check(claims map[string]any) (time.Time, *Error) {
	exp, hasExp, err := numericDate(claims, "exp")
	if err == nil && !hasExp {
		err = errors.New("claim exp is missing")
	}
	if err != nil {
		return time.Time{}, fail(ReasonTokenMalformed, err)
	}
	iat, hasIat, err := numericDate(claims, "iat")
	if err == nil && !hasIat {
		err = errors.New("claim iat is missing")
	}
	if err != nil {
		return time.Time{}, fail(ReasonTokenMalformed, err)
	}
	nbf, hasNbf, err := numericDate(claims, "nbf")
	if err != nil {
		return time.Time{}, fail(ReasonTokenMalformed, err)
	}

	if !c.now.Before(exp.Add(c.skew)) {
		return time.Time{}, fail(ReasonTokenExpired, errors.New("exp is past"))
	}
	latest := c.now.Add(c.skew)
	if hasNbf && nbf.After(latest) {
		return time.Time{}, fail(ReasonTokenNotYetValid, errors.New("nbf is in the future"))
	}
	if iat.After(latest) {
		return time.Time{}, fail(ReasonTokenNotYetValid, errors.New("iat is in the future"))
	}
	return exp, nil
}
