package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

type checkOptions struct {
	policies string
	tier     string
	token    string
	json     bool
	explain  bool
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check (--tier T | --token JWT) (api METHOD PATH | ui PATH | resource TYPE ACTION | feature NAME)",
		Short: "Decide one check offline, against the embedded policies or a directory",
		Long: `Decide one check offline, as the service would, and print the decision.

Paths are resolved to route templates with the same router the service
uses. --token reads the claims of a JWT WITHOUT verifying it: it is for
asking "what would this token get", never a substitute for verification.

Exit status: 0 on an allow, 1 on a deny, 2 on a usage or policy error.

  tierguard check --tier free api GET /api/treasure-map
  tierguard check --tier plus ui /protected-content --explain
  tierguard check --policies ./policies --tier pro feature 4k --json`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return runCheck(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.policies, "policies", "", "policy directory (default: the embedded policies)")
	f.StringVar(&o.tier, "tier", "", "decide for a subject of this tier (anonymous for no token)")
	f.StringVar(&o.token, "token", "", "decide for the claims of this JWT (not verified)")
	f.BoolVar(&o.json, "json", false, "print the decision as JSON")
	f.BoolVar(&o.explain, "explain", false, "also print the rules that decided")
	return cmd
}

func runCheck(cmd *cobra.Command, o checkOptions, args []string) error {
	if (o.tier == "") == (o.token == "") {
		return errors.New("give exactly one of --tier and --token")
	}
	subject, err := checkSubject(o)
	if err != nil {
		return err
	}

	var p *decision.Policy
	if o.policies == "" {
		p, err = decision.Embedded()
	} else {
		p, err = decision.LoadDir(o.policies)
	}
	if err != nil {
		return err
	}
	engine, err := decision.NewEngine(cmd.Context(), p)
	if err != nil {
		return err
	}
	rev := engine.Current()
	if o.tier != "" && !slices.Contains(rev.Tables().Tiers, o.tier) {
		return fmt.Errorf("--tier %q is not a tier of this policy (%s)", o.tier,
			strings.Join(rev.Tables().Tiers, ", "))
	}
	check, err := parseCheckArgs(server.NewResolver(rev.Tables(), nil), args)
	if err != nil {
		return err
	}

	in := decision.Input{Subject: subject, Check: check}
	d := rev.Decide(cmd.Context(), in)
	var steps []decision.Step
	if o.explain {
		if _, steps, err = rev.Explain(cmd.Context(), in); err != nil {
			return err
		}
	}

	out := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(struct {
			Decision decision.Decision `json:"decision"`
			Check    decision.Check    `json:"check"`
			Explain  []decision.Step   `json:"explain,omitempty"`
		}{d, check, steps})
		if err != nil {
			return err
		}
	} else {
		verdict := "deny"
		if d.Allow {
			verdict = "allow"
		}
		fmt.Fprintf(out, "%s: %s (tier %s", verdict, d.Reason, d.Tier)
		if d.RequiredTier != "" {
			fmt.Fprintf(out, ", needs %s", d.RequiredTier)
		}
		fmt.Fprintf(out, ") revision %s\n", d.Revision)
		fmt.Fprintf(out, "check: %s\n", describe(check))
		for _, s := range steps {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	if !d.Allow {
		return &exitError{code: 1, msg: "denied: " + d.Reason}
	}
	return nil
}

func describe(c decision.Check) string {
	switch c.Kind {
	case decision.KindAPI:
		return fmt.Sprintf("api %s %s -> template %q", c.Method, c.Path, c.Template)
	case decision.KindUI:
		return fmt.Sprintf("ui %s -> template %q", c.Path, c.Template)
	case decision.KindResource:
		return fmt.Sprintf("resource %s %s", c.Type, c.Action)
	default:
		return fmt.Sprintf("feature %s", c.Name)
	}
}

func parseCheckArgs(r *server.Resolver, args []string) (decision.Check, error) {
	want := map[string]int{"api": 3, "ui": 2, "resource": 3, "feature": 2}
	n, ok := want[args[0]]
	if !ok {
		return decision.Check{}, fmt.Errorf("unknown check kind %q: want api, ui, resource or feature", args[0])
	}
	if len(args) != n {
		return decision.Check{}, fmt.Errorf("%s takes %d arguments, got %d", args[0], n-1, len(args)-1)
	}
	switch args[0] {
	case "api":
		method := strings.ToUpper(args[1])
		if strings.TrimSpace(method) == "" {
			return decision.Check{}, errors.New("api needs a method")
		}
		return decision.Check{Kind: decision.KindAPI, Method: method, Path: args[2],
			Template: r.API(method, args[2])}, nil
	case "ui":
		return decision.Check{Kind: decision.KindUI, Path: args[1], Template: r.UI(args[1])}, nil
	case "resource":
		return decision.Check{Kind: decision.KindResource, Type: args[1], Action: args[2]}, nil
	default:
		return decision.Check{Kind: decision.KindFeature, Name: args[1]}, nil
	}
}

// checkSubject builds the subject for --tier (a token whose tier claim
// says so) or --token (its claims, read as the service reads them but
// unverified: this is an offline tool).
func checkSubject(o checkOptions) (decision.Subject, error) {
	if o.tier != "" {
		if o.tier == "anonymous" {
			return decision.Subject{}, nil
		}
		return decision.Subject{Authenticated: true, Subject: "check@" + o.tier,
			Claims: map[string]any{"tier": o.tier}}, nil
	}
	id, err := identity.InsecureUnverifiedIdentity(o.token)
	if err != nil {
		return decision.Subject{}, fmt.Errorf("--token: %w", err)
	}
	return server.SubjectOf(id), nil
}
