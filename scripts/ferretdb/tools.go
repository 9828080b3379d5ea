//go:build tools

// Pins the FerretDB command so `go build` finds it in this module's requirements.
package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
