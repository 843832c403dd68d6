//go:build !linux

package main

import (
	"os"
	"syscall"
	"time"
)

// terminate asks a server to shut down gracefully.
var terminate = os.Interrupt

// childAttr is empty here: only Linux kills children of a dead parent, so
// a bench killed with kill -9 may leave its servers running.
func childAttr() *syscall.SysProcAttr { return nil }

// processCPU is unknown here: the report leaves CPU per decision out.
func processCPU(int) (time.Duration, bool) { return 0, false }
