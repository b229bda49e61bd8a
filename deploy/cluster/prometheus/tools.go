//go:build tools

// Package tools names the commands this module builds.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
