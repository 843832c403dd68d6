package decision

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// Building the input as an AST value skips the JSON round trip OPA would
// otherwise make of a Go map on every evaluation.

var anonymousSubject = ast.NewObject(ast.Item(ast.InternedTerm("authenticated"), ast.InternedTerm(false)))

func subjectValue(s Subject) (*ast.Term, error) {
	if !s.Authenticated {
		return ast.NewTerm(anonymousSubject), nil
	}
	claims, err := ast.InterfaceToValue(orEmpty(s.Claims))
	if err != nil {
		return nil, err
	}
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("authenticated"), ast.InternedTerm(true)),
		ast.Item(ast.InternedTerm("iss"), ast.StringTerm(s.Issuer)),
		ast.Item(ast.InternedTerm("sub"), ast.StringTerm(s.Subject)),
		ast.Item(ast.InternedTerm("client_id"), ast.StringTerm(s.ClientID)),
		ast.Item(ast.InternedTerm("scopes"), stringsTerm(s.Scopes)),
		ast.Item(ast.InternedTerm("groups"), stringsTerm(s.Groups)),
		ast.Item(ast.InternedTerm("claims"), ast.NewTerm(claims)),
	), nil
}

func inputValue(s Subject, profile map[string]any, key string, checks *ast.Term) (ast.Value, error) {
	subject, err := subjectValue(s)
	if err != nil {
		return nil, err
	}
	items := [][2]*ast.Term{
		ast.Item(ast.InternedTerm("subject"), subject),
		ast.Item(ast.StringTerm(key), checks),
	}
	if profile != nil {
		p, err := ast.InterfaceToValue(profile)
		if err != nil {
			return nil, err
		}
		items = append(items, ast.Item(ast.InternedTerm("profile"), ast.NewTerm(p)))
	}
	return ast.NewObject(items...), nil
}

// checkValue writes only the fields that are set, so a policy can tell an
// absent field from an empty one.
func checkValue(c Check) *ast.Term {
	items := make([][2]*ast.Term, 0, 4)
	add := func(k, v string) {
		if v != "" {
			items = append(items, ast.Item(ast.InternedTerm(k), ast.StringTerm(v)))
		}
	}
	add("kind", c.Kind)
	add("method", c.Method)
	add("template", c.Template)
	add("path", c.Path)
	add("type", c.Type)
	add("action", c.Action)
	add("id", c.ID)
	add("name", c.Name)
	return ast.ObjectTerm(items...)
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
