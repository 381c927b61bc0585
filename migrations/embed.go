// Package migrations holds mocd's Postgres schema as numbered SQL files,
// embedded in the binary so that `mocd migrate` needs nothing on disk.
package migrations

import "embed"

// FS holds every migration, named NNNNN_description.sql, in goose's format.
//
//go:embed *.sql
var FS embed.FS
