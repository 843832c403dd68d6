package decision

import (
	"fmt"
	"slices"
	"strings"
)

// APIRoute is one API route the policy declares, in Echo's template syntax.
type APIRoute struct {
	Method   string
	Template string
	Tier     string
}

// UIRoute is one page the policy declares, with the API routes it calls as
// "METHOD /template" strings.
type UIRoute struct {
	Template string
	Tier     string
	Requires []string
}

// Tables lists what a policy revision declares: the routes a server builds
// its routers from, and the pages and features a route map reports. Every
// slice is sorted, so two equal policies give equal tables.
type Tables struct {
	APIRoutes []APIRoute
	UIRoutes  []UIRoute
	Features  []string
	Resources map[string][]string // type -> actions
	Tiers     []string            // lowest first
}

// tablesFrom reads the declarations under data.tierguard. A tree of the
// wrong shape is a load error, so a broken data file never goes live.
func tablesFrom(data map[string]any) (Tables, error) {
	root, ok := data["tierguard"].(map[string]any)
	if !ok {
		return Tables{}, fmt.Errorf("data.tierguard is missing or not an object")
	}
	var t Tables
	var err error

	if t.Tiers, err = stringList(root["tiers"], "data.tierguard.tiers"); err != nil {
		return Tables{}, err
	}
	if len(t.Tiers) == 0 {
		return Tables{}, fmt.Errorf("data.tierguard.tiers is empty")
	}

	byMethod, err := object(root["api_routes"], "data.tierguard.api_routes")
	if err != nil {
		return Tables{}, err
	}
	for method, v := range byMethod {
		routes, err := object(v, "data.tierguard.api_routes."+method)
		if err != nil {
			return Tables{}, err
		}
		for template, r := range routes {
			where := fmt.Sprintf("data.tierguard.api_routes.%s[%q]", method, template)
			if err := validTemplate(template, where); err != nil {
				return Tables{}, err
			}
			route, err := object(r, where)
			if err != nil {
				return Tables{}, err
			}
			tier, _ := route["tier"].(string)
			t.APIRoutes = append(t.APIRoutes, APIRoute{Method: method, Template: template, Tier: tier})
		}
	}
	slices.SortFunc(t.APIRoutes, func(a, b APIRoute) int {
		return strings.Compare(a.Template+" "+a.Method, b.Template+" "+b.Method)
	})

	pages, err := object(root["ui_routes"], "data.tierguard.ui_routes")
	if err != nil {
		return Tables{}, err
	}
	for template, p := range pages {
		where := fmt.Sprintf("data.tierguard.ui_routes[%q]", template)
		if err := validTemplate(template, where); err != nil {
			return Tables{}, err
		}
		page, err := object(p, where)
		if err != nil {
			return Tables{}, err
		}
		requires, err := stringList(page["requires"], where+".requires")
		if err != nil {
			return Tables{}, err
		}
		tier, _ := page["tier"].(string)
		t.UIRoutes = append(t.UIRoutes, UIRoute{Template: template, Tier: tier, Requires: requires})
	}
	slices.SortFunc(t.UIRoutes, func(a, b UIRoute) int { return strings.Compare(a.Template, b.Template) })

	features, err := object(root["features"], "data.tierguard.features")
	if err != nil {
		return Tables{}, err
	}
	for name := range features {
		t.Features = append(t.Features, name)
	}
	slices.Sort(t.Features)

	resources, err := object(root["resources"], "data.tierguard.resources")
	if err != nil {
		return Tables{}, err
	}
	t.Resources = make(map[string][]string, len(resources))
	for typ, v := range resources {
		actions, err := object(v, "data.tierguard.resources."+typ)
		if err != nil {
			return Tables{}, err
		}
		for action := range actions {
			t.Resources[typ] = append(t.Resources[typ], action)
		}
		slices.Sort(t.Resources[typ])
	}
	return t, nil
}

// validTemplate refuses templates a router would read differently from the
// policy author: each must be an absolute path without spaces.
func validTemplate(template, where string) error {
	if !strings.HasPrefix(template, "/") || strings.ContainsAny(template, " \t\r\n?#") {
		return fmt.Errorf("%s: a route template is an absolute path without spaces, query or fragment", where)
	}
	return nil
}

// object accepts an absent value as empty, so a policy may omit a table.
func object(v any, where string) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s must be an object", where)
	}
	return m, nil
}

func stringList(v any, where string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s must be an array of strings", where)
	}
	out := make([]string, 0, len(items))
	for _, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("%s must be an array of strings", where)
		}
		out = append(out, s)
	}
	return out, nil
}
