package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server/identity"
)

func (s *Server) live(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, map[string]string{"status": "live"})
}

type readiness struct {
	Ready   bool                    `json:"ready"`
	Missing []string                `json:"missing,omitempty"`
	Issuers []identity.IssuerStatus `json:"issuers"`
	Policy  decision.UpdateStatus   `json:"policy"`
	Bundle  *decision.BundleStatus  `json:"bundle,omitempty"`
	// DecisionTable says whether decisions come from the revision's table
	// or from full evaluation; either is correct, the table is faster.
	DecisionTable decision.TableStatus `json:"decision_table"`
}

// ready is true only with keys for every issuer, a policy loaded and, in
// bundle mode, a first bundle active; its body says what is missing.
// Details are for operators (they name policy sources and errors) and
// never hold credentials; keep /health off the public internet.
func (s *Server) ready(c echo.Context) error {
	r := readiness{Ready: true, Issuers: s.verifier.Status(), Policy: s.engine.Status(),
		DecisionTable: s.engine.Current().TableStatus()}
	for _, is := range r.Issuers {
		if !is.Ready {
			r.Ready = false
			r.Missing = append(r.Missing, "keys for issuer "+is.Issuer)
		}
	}
	if r.Policy.Revision == "" {
		r.Ready = false
		r.Missing = append(r.Missing, "a policy")
	}
	if s.cfg.Bundle != nil {
		st := s.cfg.Bundle.Status()
		r.Bundle = &st
		if !st.Activated {
			r.Ready = false
			r.Missing = append(r.Missing, "a first policy bundle")
		}
	}
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(status, r)
}
