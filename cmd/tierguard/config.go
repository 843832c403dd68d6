package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/tierguard/tierguard/decision/decisionlog"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// fileConfig is the YAML config file. Durations are Go duration strings
// ("60s", "1h"). Unknown keys are an error, so a typo never silently
// drops a setting.
type fileConfig struct {
	Addr        string             `json:"addr"`
	Policies    string             `json:"policies"`
	App         string             `json:"app"`
	CORSOrigins []string           `json:"cors_origins"`
	DecisionTTL string             `json:"decision_ttl"`
	Issuers     []fileIssuer       `json:"issuers"`
	PEPClients  []server.PEPClient `json:"pep_clients"`
	Bundle      fileBundle         `json:"bundle"`

	DecisionLogs     fileDecisionLogs `json:"decision_logs"`
	ForwardAuthProxy string           `json:"forward_auth_proxy"`
}

// fileBundle is bundle mode: policies from an OPA bundle server. The
// polling settings exist only here; the rest mirror the --bundle-* flags.
type fileBundle struct {
	URL       string `json:"url"`
	Resource  string `json:"resource"`
	PublicKey string `json:"public_key"` // a PEM file
	Dir       string `json:"dir"`
	// BearerToken is sent to the bundle server; it is never logged.
	BearerToken string `json:"bearer_token"`
	// InsecureAllowUnsigned accepts bundles without a signature when no
	// public key is given: whoever answers for the bundle server decides.
	InsecureAllowUnsigned bool   `json:"insecure_allow_unsigned"`
	PollMin               string `json:"poll_min"`
	PollMax               string `json:"poll_max"`
	LongPollTimeout       string `json:"long_poll_timeout"`
}

// fileDecisionLogs is where decision logs go. Mask rules follow OPA's:
// "/input/subject/claims/email" erases, {op: upsert, path, value} replaces.
type fileDecisionLogs struct {
	Console       bool                   `json:"console"`
	URL           string                 `json:"url"`
	Resource      string                 `json:"resource"`
	BearerToken   string                 `json:"bearer_token"`
	Labels        map[string]string      `json:"labels"`
	Mask          []decisionlog.MaskRule `json:"mask"`
	FlushInterval string                 `json:"flush_interval"`
}

type fileIssuer struct {
	Issuer       string   `json:"issuer"`
	Audience     string   `json:"audience"`
	ClientIDs    []string `json:"client_ids"`
	Algorithms   []string `json:"algorithms"`
	ClockSkew    string   `json:"clock_skew"`
	RequireATJWT bool     `json:"require_at_jwt"`
	MaxKeyAge    string   `json:"max_key_age"`
}

func readConfigFile(path string) (fileConfig, error) {
	var fc fileConfig
	raw, err := os.ReadFile(path)
	if err != nil {
		return fc, fmt.Errorf("reading config: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &fc); err != nil {
		return fc, fmt.Errorf("config %s: %w", path, err)
	}
	return fc, nil
}

func (fi fileIssuer) toConfig(i int) (identity.IssuerConfig, error) {
	c := identity.IssuerConfig{
		Issuer: fi.Issuer, Audience: fi.Audience, ClientIDs: fi.ClientIDs,
		Algorithms: fi.Algorithms, RequireATJWT: fi.RequireATJWT,
	}
	var err error
	if c.ClockSkew, err = optionalDuration(fi.ClockSkew); err != nil {
		return c, fmt.Errorf("issuers[%d].clock_skew: %w", i, err)
	}
	if c.MaxKeyAge, err = optionalDuration(fi.MaxKeyAge); err != nil {
		return c, fmt.Errorf("issuers[%d].max_key_age: %w", i, err)
	}
	return c, nil
}

func optionalDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

// isLoopback reports whether addr (host:port) can only be reached from
// this machine. Dev mode mints tokens for anyone who asks, so it listens
// nowhere else.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
