package identity

import (
	"errors"
	"log/slog"
	"net/http"
)

// Reason codes, exactly as DESIGN.md's "Errors and headers" names them. The
// server shows a client only the reason (and the status); everything else
// in an Error is for logs.
const (
	// ReasonInvalidRequest: the Authorization or X-ID-Token header is not
	// one well-formed bearer token (400).
	ReasonInvalidRequest = "invalid_request"
	// ReasonTokenMalformed: not a JWT we can read, or claims of the wrong
	// type, duplicated or differing only in case.
	ReasonTokenMalformed = "token_malformed"
	// ReasonTokenExpired: exp is past, beyond the clock skew.
	ReasonTokenExpired = "token_expired"
	// ReasonTokenNotYetValid: nbf or iat is in the future, beyond the skew.
	ReasonTokenNotYetValid = "token_not_yet_valid"
	// ReasonTokenSignature: the signature does not verify, the algorithm is
	// not allowed (none, HS256, ...), or the header carries its own key.
	ReasonTokenSignature = "token_signature"
	// ReasonTokenIssuer: iss is missing or names no trusted issuer.
	ReasonTokenIssuer = "token_issuer"
	// ReasonTokenAudience: aud does not contain the API's audience.
	ReasonTokenAudience = "token_audience"
	// ReasonTokenClient: the client (cid, client_id, azp) is not allowed.
	ReasonTokenClient = "token_client"
	// ReasonTokenType: not an access token (an ID token, a typ we refuse).
	ReasonTokenType = "token_type"
	// ReasonTokenUnknownKey: the kid is not in the issuer's key set, even
	// after a refetch (or the cooldown forbade one).
	ReasonTokenUnknownKey = "token_unknown_key"
	// ReasonIDTokenMismatch: the X-ID-Token does not verify as an ID token
	// of an allowed client, or is not bound to the access token.
	ReasonIDTokenMismatch = "id_token_mismatch"
	// ReasonIssuerUnavailable: the token's issuer has no usable keys yet,
	// or they are older than MaxKeyAge (503).
	ReasonIssuerUnavailable = "issuer_unavailable"
)

// Error is every verification failure. Its Error text is only the reason:
// it never holds token text, claims, the expected issuer or audience, the
// kid, or library error text, so it is safe in a response. The fields and
// the wrapped cause are for logs; Issuer, KeyID and Subject may come from an
// unverified token (KeyID always, Subject never) and are cut to a short
// length.
type Error struct {
	// Reason is one of the Reason* codes.
	Reason string
	// Status is the HTTP status for Reason: 400, 401 or 503.
	Status int
	// Issuer is the token's iss where known.
	Issuer string
	// KeyID is the token's kid where known. Attacker-controlled.
	KeyID string
	// Subject is the verified sub where known.
	Subject string
	// Err is the internal cause, possibly library text. Never show it.
	Err error
}

// Error returns "identity: " and the reason code, nothing else.
func (e *Error) Error() string { return "identity: " + e.Reason }

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// LogValue logs the reason with iss, kid and sub where known, and the
// cause. It never logs a token: no error here holds one.
func (e *Error) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("reason", e.Reason)}
	if e.Issuer != "" {
		attrs = append(attrs, slog.String("iss", e.Issuer))
	}
	if e.KeyID != "" {
		attrs = append(attrs, slog.String("kid", e.KeyID))
	}
	if e.Subject != "" {
		attrs = append(attrs, slog.String("sub", e.Subject))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.Any("cause", e.Err)) // a nested *Error logs as a group
	}
	return slog.GroupValue(attrs...)
}

// ReasonOf returns the reason code of err, or "" when err is not an *Error.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// statusOf maps a reason to its HTTP status.
func statusOf(reason string) int {
	switch reason {
	case ReasonInvalidRequest:
		return http.StatusBadRequest
	case ReasonIssuerUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusUnauthorized
	}
}

// fail builds an *Error for reason with cause err.
func fail(reason string, err error) *Error {
	return &Error{Reason: reason, Status: statusOf(reason), Err: err}
}

// maxLoggedLen bounds attacker-supplied strings copied into an Error.
const maxLoggedLen = 128

// clip cuts s to maxLoggedLen bytes for logging, marking the cut.
func clip(s string) string {
	if len(s) <= maxLoggedLen {
		return s
	}
	return s[:maxLoggedLen] + "..."
}

// Causes the verifier wraps in an Error. They are internal: tests and logs
// see them, clients never do.
var (
	errTokenEmpty       = errors.New("token is empty")
	errTokenTooLarge    = errors.New("token is larger than 16 KiB")
	errTokenShape       = errors.New("token is not three base64url parts")
	errHeaderCount      = errors.New("more than one header")
	errHeaderScheme     = errors.New("scheme is not Bearer")
	errDuplicateClaim   = errors.New("duplicate claim name")
	errCaseVariantClaim = errors.New("claim names differ only in case")
	errKeyInHeader      = errors.New("token header names its own key (jwk, jku, x5u or x5c)")
	errCritical         = errors.New("token header has crit")
	errAlgorithm        = errors.New("signing algorithm not allowed")
	errUnknownKey       = errors.New("no key with this kid in the issuer's key set")
	errBadSignature     = errors.New("signature does not verify with the issuer's keys")
	errNoKeys           = errors.New("issuer has no usable keys")
	errIDTokenAlone     = errors.New("an ID token came without an access token")
)
