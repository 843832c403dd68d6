package decision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/tierguard/tierguard/policies"
)

// Policy is one revision of the policy: its decision modules, its data and
// the tests that vouch for it. A Policy is immutable once loaded.
type Policy struct {
	// Revision identifies the policy: a content hash of modules and data,
	// or the revision a bundle declares.
	Revision string

	modules map[string]*ast.Module // decision path only, no tests
	tests   map[string]*ast.Module
	data    map[string]any
}

// Embedded loads the policies compiled into the binary.
func Embedded() (*Policy, error) {
	return LoadFS(policies.FS)
}

// LoadDir loads a policy tree from a directory on disk: *.rego modules,
// *_test.rego tests and data.json/data.yaml documents, placed in data by
// their directory as `opa test DIR` places them.
func LoadDir(dir string) (*Policy, error) {
	return LoadFS(os.DirFS(dir))
}

// LoadFS loads a policy tree from fsys, as LoadDir does.
func LoadFS(fsys fs.FS) (*Policy, error) {
	result, err := loader.NewFileLoader().
		WithFS(fsys).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		Filtered([]string{"."}, skipHidden)
	if err != nil {
		return nil, &PolicyError{Stage: "load", Err: err}
	}

	raw := make(map[string][]byte, len(result.Modules))
	modules := make(map[string]*ast.Module)
	tests := make(map[string]*ast.Module)
	for name, file := range result.Modules {
		raw[name] = file.Raw
		if strings.HasSuffix(name, "_test.rego") {
			tests[name] = file.Parsed
		} else {
			modules[name] = file.Parsed
		}
	}
	return newPolicy(modules, tests, result.Documents, contentRevision(raw, result.Documents))
}

// NewPolicy builds a policy from module sources and a data document, as a
// bundle delivers them. Modules named *_test.rego are kept as tests.
func NewPolicy(sources map[string][]byte, data map[string]any, revision string) (*Policy, error) {
	modules := make(map[string]*ast.Module)
	tests := make(map[string]*ast.Module)
	opts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	for name, src := range sources {
		m, err := ast.ParseModuleWithOpts(name, string(src), opts)
		if err != nil {
			return nil, &PolicyError{Stage: "load", Err: err}
		}
		if strings.HasSuffix(name, "_test.rego") {
			tests[name] = m
		} else {
			modules[name] = m
		}
	}
	if revision == "" {
		revision = contentRevision(sources, data)
	}
	return newPolicy(modules, tests, data, revision)
}

func newPolicy(modules, tests map[string]*ast.Module, data map[string]any, revision string) (*Policy, error) {
	if len(modules) == 0 {
		return nil, &PolicyError{Stage: "load", Err: ErrNoPolicy}
	}
	if data == nil {
		data = map[string]any{}
	}
	return &Policy{Revision: revision, modules: modules, tests: tests, data: data}, nil
}

// skipHidden keeps dot-files and editors' backup files out of a policy
// tree, so a half-saved buffer is never loaded as policy.
func skipHidden(_ string, info fs.FileInfo, depth int) bool {
	name := info.Name()
	if depth == 0 {
		return false
	}
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
		(!info.IsDir() && !strings.HasSuffix(name, ".rego") &&
			!strings.HasSuffix(name, ".json") && !strings.HasSuffix(name, ".yaml") &&
			!strings.HasSuffix(name, ".yml"))
}

// contentRevision hashes module sources and data in a fixed order, so the
// same policy always gets the same revision on every replica.
func contentRevision(sources map[string][]byte, data map[string]any) string {
	h := sha256.New()
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(h, "module %q %d\n", name, len(sources[name]))
		h.Write(sources[name])
	}
	doc, _ := json.Marshal(data) // maps marshal with sorted keys
	fmt.Fprintf(h, "data %d\n", len(doc))
	h.Write(doc)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Compile compiles the decision modules in strict mode, with the type
// checks that the modules' schema annotations ask for.
func (p *Policy) compile() (*ast.Compiler, error) {
	c := ast.NewCompiler().
		WithStrict(true).
		WithUseTypeCheckAnnotations(true).
		WithEnablePrintStatements(false)
	c.Compile(p.modules)
	if c.Failed() {
		return nil, &PolicyError{Stage: "compile", Err: c.Errors}
	}
	return c, nil
}

// Test runs the policy's own Rego tests against its modules and data. A
// policy whose tests fail must not replace a running one.
func (p *Policy) Test(ctx context.Context) error {
	if len(p.tests) == 0 {
		return nil
	}
	all := make(map[string]*ast.Module, len(p.modules)+len(p.tests))
	for name, m := range p.modules {
		all[name] = m.Copy()
	}
	for name, m := range p.tests {
		all[name] = m.Copy()
	}

	store := inmem.NewFromObject(p.data)
	results, err := tester.NewRunner().
		SetStore(store).
		SetDefaultRegoVersion(ast.RegoV1).
		CapturePrintOutput(true).
		Run(ctx, all)
	if err != nil {
		return &PolicyError{Stage: "test", Err: err}
	}

	var failed []string
	ran := 0
	for r := range results {
		ran++
		if r.Error != nil {
			failed = append(failed, fmt.Sprintf("%s.%s: %v", r.Package, r.Name, r.Error))
		} else if r.Fail {
			failed = append(failed, fmt.Sprintf("%s.%s", r.Package, r.Name))
		}
	}
	if len(failed) > 0 {
		err := fmt.Errorf("%d of %d tests failed: %s", len(failed), ran, strings.Join(failed, ", "))
		return &PolicyError{Stage: "test", Err: err}
	}
	return nil
}

// Modules returns the decision modules' names, for reports.
func (p *Policy) Modules() []string {
	names := make([]string, 0, len(p.modules))
	for name := range p.modules {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
