// Command pause is the pod sandbox's placeholder process for the local
// cluster: containerd starts it first in every pod to hold the pod's
// namespaces. It reaps orphaned children (it is PID 1 in its PID namespace)
// and exits 0 on SIGTERM or SIGINT. There is no registry to pull
// registry.k8s.io/pause from, so the cluster tooling builds this instead.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited; one SIGCHLD may stand for several.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
