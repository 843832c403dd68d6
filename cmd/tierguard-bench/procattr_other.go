//go:build !linux

package main

import (
	"os"
	"syscall"
)

// terminate asks a server to shut down gracefully.
var terminate = os.Interrupt

// childAttr is empty here: only Linux kills children of a dead parent, so
// a bench killed with kill -9 may leave its servers running.
func childAttr() *syscall.SysProcAttr { return nil }
