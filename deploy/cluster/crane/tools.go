//go:build tools

// Package tools names the commands this module builds.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
)
