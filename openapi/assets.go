package openapi

import _ "embed"

// RedocVersion is the release of Redoc (npm package redoc, MIT licence)
// whose standalone bundle is embedded; tools/openapi/package.json pins the
// same release and scripts/openapi-lint.sh checks the bytes match.
const RedocVersion = "2.5.4"

var (
	//go:embed assets/redoc.standalone.js
	redocJS []byte
	//go:embed assets/redoc.standalone.js.LICENSE.txt
	redocLicenses []byte
)

// RedocJS answers Redoc's standalone bundle, which renders the document in
// a browser with no other file. The slice is shared: do not change it.
func RedocJS() []byte { return redocJS }

// RedocLicenses answers the licence notices of the code in the bundle, which
// the bundle's first line refers to. The slice is shared: do not change it.
func RedocLicenses() []byte { return redocLicenses }
