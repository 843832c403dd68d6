// Package policies embeds the default Rego policies and their data, so the
// service decides with no files on disk. Edit the .rego and .json files
// beside this one; `go tool opa test policies/` runs their tests.
package policies

import "embed"

// FS holds the policy tree as it is on disk, tests included. Loaders leave
// the *_test.rego files out of the decision path.
//
//go:embed tierguard
var FS embed.FS
