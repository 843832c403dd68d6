// Package decisiontest builds policies for tests and benchmarks of the
// decision engine: the real tier policy with route tables of any size.
package decisiontest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"testing/fstest"

	"github.com/tierguard/tierguard/policies"
)

// Tiers are the tiers of a synthetic policy, lowest first.
var Tiers = []string{"anonymous", "free", "plus", "pro"}

// Template is the i-th API route template of a synthetic policy; its tier
// is Tiers[i%4].
func Template(i int) string { return fmt.Sprintf("/api/r%d/:id", i) }

// SyntheticPolicy returns a policy tree: the embedded authz.rego with a
// generated data.json of n GET API routes (Template(0) to Template(n-1))
// and a page for every tenth, which needs its route. It carries no tests.
func SyntheticPolicy(n int) (fstest.MapFS, error) {
	module, err := fs.ReadFile(policies.FS, "tierguard/authz/authz.rego")
	if err != nil {
		return nil, err
	}
	api := map[string]any{}
	ui := map[string]any{}
	for i := range n {
		api[Template(i)] = map[string]any{"tier": Tiers[i%4]}
		if i%10 == 0 {
			ui[fmt.Sprintf("/r%d/:id", i)] = map[string]any{
				"tier": "free", "requires": []string{"GET " + Template(i)},
			}
		}
	}
	data, err := json.Marshal(map[string]any{
		"tiers":             Tiers,
		"tier_group_prefix": "tier-",
		"api_routes":        map[string]any{"GET": api},
		"ui_routes":         ui,
		"resources":         map[string]any{},
		"features":          map[string]any{"hd": "plus"},
		"subjects":          map[string]any{},
	})
	if err != nil {
		return nil, err
	}
	return fstest.MapFS{
		"tierguard/authz/authz.rego": {Data: module},
		"tierguard/data.json":        {Data: data},
	}, nil
}
