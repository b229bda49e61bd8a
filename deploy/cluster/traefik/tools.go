//go:build tools

// Package tools names the commands this module builds.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
