package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/server/identity"
)

// Public reason codes the server adds to the policy's and the verifier's.
const (
	reasonInvalidRequest   = "invalid_request"
	reasonBatchTooLarge    = "batch_too_large"
	reasonBodyTooLarge     = "body_too_large"
	reasonNotFound         = "not_found"
	reasonMethodNotAllowed = "method_not_allowed"
	reasonUnsupportedMedia = "unsupported_media_type"
	reasonPEPForbidden     = "pep_forbidden"
	reasonInternal         = "internal_error"
	reasonRequestTimeout   = "request_timeout"
	reasonUnauthenticated  = "unauthenticated"
)

// problem is an RFC 9457 problem-details body with tierguard's members.
// The reason code is what clients switch on; title and detail are prose.
type problem struct {
	Type         string    `json:"type"`
	Title        string    `json:"title"`
	Status       int       `json:"status"`
	Detail       string    `json:"detail,omitempty"`
	Reason       string    `json:"reason"`
	RequiredTier *nullable `json:"required_tier,omitempty"`
	DecisionID   string    `json:"decision_id,omitempty"`
	Field        string    `json:"field,omitempty"`
	RequestID    string    `json:"request_id,omitempty"`

	headers [][2]string // set on the response, not in the body
}

// nullable is a string that marshals as null when empty, for required_tier.
type nullable string

func (n nullable) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(n))
}

func tierOf(s string) *nullable {
	n := nullable(s)
	return &n
}

// apiError is what handlers and middleware return. The error handler turns
// it into a problem; cause goes to the log, never to the client.
type apiError struct {
	problem
	cause error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.Reason + ": " + e.cause.Error()
	}
	return e.Reason
}

func (e *apiError) Unwrap() error { return e.cause }

func newError(status int, reason, detail string) *apiError {
	return &apiError{problem: problem{Status: status, Reason: reason, Detail: detail}}
}

func badField(field, detail string) *apiError {
	e := newError(http.StatusBadRequest, reasonInvalidRequest, field+": "+detail)
	e.Field = field
	return e
}

// handleError is Echo's central error handler: every error in the service
// is answered here, as problem details, and logged here once.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p, cause := s.toProblem(err)
	p.Type = "about:blank"
	p.Title = http.StatusText(p.Status)
	p.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)

	h := c.Response().Header()
	for _, kv := range p.headers {
		h.Set(kv[0], kv[1])
	}
	h.Set(echo.HeaderCacheControl, "no-store")
	// Every refusal names its reason in a header too: a proxy doing
	// forward auth drops the body, and the header costs nothing elsewhere.
	h.Set(headerReason, p.Reason)

	level := slog.LevelInfo
	if p.Status >= 500 {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.Int("status", p.Status), slog.String("reason", p.Reason),
		slog.String("request_id", p.RequestID),
	}
	if cause != nil {
		attrs = append(attrs, slog.Any("error", cause))
	}
	s.logger.LogAttrs(c.Request().Context(), level, "request refused", attrs...)

	if c.Request().Method == http.MethodHead {
		err = c.NoContent(p.Status)
	} else {
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(p.Status)
		err = json.NewEncoder(c.Response()).Encode(p)
	}
	if err != nil {
		s.logger.Debug("writing problem failed", slog.Any("error", err))
	}
}

func (s *Server) toProblem(err error) (problem, error) {
	var api *apiError
	if errors.As(err, &api) {
		return api.problem, api.cause
	}

	var idErr *identity.Error
	if errors.As(err, &idErr) {
		s.metrics.tokenFailures.WithLabelValues(idErr.Reason).Inc()
		p := problem{Status: idErr.Status, Reason: idErr.Reason}
		switch idErr.Status {
		case http.StatusUnauthorized:
			p.Detail = "the bearer token was refused"
			p.headers = append(p.headers, [2]string{echo.HeaderWWWAuthenticate,
				`Bearer error="invalid_token"`})
		case http.StatusBadRequest:
			p.Detail = "the Authorization or X-ID-Token header is not one bearer token"
			p.headers = append(p.headers, [2]string{echo.HeaderWWWAuthenticate,
				`Bearer error="invalid_request"`})
		case http.StatusServiceUnavailable:
			p.Detail = "the token's issuer has no usable keys yet"
			p.headers = append(p.headers, [2]string{"Retry-After", "5"})
		}
		return p, idErr
	}

	var he *echo.HTTPError
	if errors.As(err, &he) {
		p := problem{Status: he.Code, Reason: reasonInternal}
		switch he.Code {
		case http.StatusNotFound:
			p.Reason = reasonNotFound
		case http.StatusMethodNotAllowed:
			p.Reason = reasonMethodNotAllowed
		case http.StatusRequestEntityTooLarge:
			p.Reason, p.Detail = reasonBodyTooLarge, "the request body is over the limit"
		case http.StatusUnsupportedMediaType:
			p.Reason = reasonUnsupportedMedia
		case http.StatusBadRequest:
			p.Reason = reasonInvalidRequest
		case http.StatusServiceUnavailable:
			p.Reason = "unavailable"
		default:
			if he.Code < 500 {
				p.Reason = reasonInvalidRequest
			}
		}
		return p, he.Internal
	}

	return problem{Status: http.StatusInternalServerError, Reason: reasonInternal}, err
}
