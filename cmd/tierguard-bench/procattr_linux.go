package main

import "syscall"

// terminate asks a server to shut down gracefully.
var terminate = syscall.SIGTERM

// childAttr has the kernel kill a server when the bench dies without
// cleaning up (kill -9), so no server outlives it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
