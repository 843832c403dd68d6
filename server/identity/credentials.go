package identity

import (
	"log/slog"
	"net/http"
	"strings"
)

// Token is a raw JWT that redacts itself wherever it might be printed or
// logged: String, GoString and LogValue all return "[REDACTED]". Convert it
// with string(t) where the text is really needed, and never log that.
type Token string

const redacted = "[REDACTED]"

// String redacts the token.
func (Token) String() string { return redacted }

// GoString redacts the token in %#v.
func (Token) GoString() string { return redacted }

// LogValue redacts the token in slog.
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }

// IDTokenHeaderName is the request header carrying the optional ID token.
const IDTokenHeaderName = "X-ID-Token"

// maxAuthorizationLen is the longest Authorization value looked at: the
// scheme, a few spaces and the largest token.
const maxAuthorizationLen = len("Bearer") + 8 + MaxTokenSize

// BearerToken extracts the access token from the Authorization header. It
// returns ("", nil) when there is no Authorization header at all, meaning
// an anonymous caller. Tokens are read from this header only, never from the
// query string, a cookie or the body (RFC 6750 section 2.1 only).
//
// The header must appear once, with scheme Bearer in any case, one or more
// spaces (RFC 6750: 1*SP), and exactly one token of at most 16 KiB made of
// three non-empty base64url parts without padding. Anything else is an
// *Error with reason invalid_request (400): a malformed header is never
// treated as anonymous.
func BearerToken(h http.Header) (string, error) {
	values := h.Values("Authorization")
	if len(values) == 0 {
		return "", nil
	}
	if len(values) > 1 {
		return "", fail(ReasonInvalidRequest, errHeaderCount)
	}

	value := values[0]
	if len(value) > maxAuthorizationLen {
		return "", fail(ReasonInvalidRequest, errTokenTooLarge)
	}
	scheme, rest, ok := strings.Cut(value, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fail(ReasonInvalidRequest, errHeaderScheme)
	}

	token := strings.TrimLeft(rest, " ")
	if err := checkShape(token); err != nil {
		return "", fail(ReasonInvalidRequest, err)
	}
	return token, nil
}

// IDTokenHeader extracts the optional ID token from X-ID-Token: the token
// alone, no scheme. It returns ("", nil) when the header is absent. Like
// BearerToken it refuses a repeated header, or a value that is not one JWT
// of at most 16 KiB, with invalid_request (400): a header that is not a
// JWT at all is a malformed request, the same as a bad Authorization.
func IDTokenHeader(h http.Header) (string, error) {
	values := h.Values(IDTokenHeaderName)
	if len(values) == 0 {
		return "", nil
	}
	if len(values) > 1 {
		return "", fail(ReasonInvalidRequest, errHeaderCount)
	}
	if err := checkShape(values[0]); err != nil {
		return "", fail(ReasonInvalidRequest, err)
	}
	return values[0], nil
}

// checkShape checks size and shape before any decoding: at most
// MaxTokenSize bytes, exactly three non-empty parts of the unpadded
// base64url alphabet.
func checkShape(token string) error {
	if token == "" {
		return errTokenEmpty
	}
	if len(token) > MaxTokenSize {
		return errTokenTooLarge
	}

	dots, partLen := 0, 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			if partLen == 0 {
				return errTokenShape
			}
			dots++
			partLen = 0
		case isBase64URL(c):
			partLen++
		default:
			return errTokenShape
		}
	}
	if dots != 2 || partLen == 0 {
		return errTokenShape
	}
	return nil
}

// isBase64URL reports whether c is in RFC 4648's base64url alphabet.
func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_'
}
