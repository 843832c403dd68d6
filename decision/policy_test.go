package decision

import (
	"context"
	"testing"
)

// TestRegoPolicyTests runs policies/**/*_test.rego through OPA's own test
// runner, so `go test ./...` covers the policy as `opa test` does.
func TestRegoPolicyTests(t *testing.T) {
	p, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.tests) == 0 {
		t.Fatal("the embedded policy carries no *_test.rego files")
	}
	if err := p.Test(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The decision path must not see test modules: a test package could
// otherwise define rules the service evaluates.
func TestEmbeddedDecisionPathExcludesTests(t *testing.T) {
	p, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range p.Modules() {
		if len(name) > len("_test.rego") && name[len(name)-len("_test.rego"):] == "_test.rego" {
			t.Errorf("decision modules include the test file %s", name)
		}
	}
}
