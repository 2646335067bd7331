// Command sample-app is the workload of the node tests and `make demo`: it
// prints the environment variables named on its command line, one line each
// ("sample-app: GREETING=bonjour"), then sleeps until SIGTERM or SIGINT, on
// which it exits at once (as PID 1 of its container it would otherwise
// ignore them and every rollout would wait for the grace period).
//
//	sample-app [--once] NAME...
//
// --once prints and exits: `kubectl exec POD -- /sample-app --once GREETING`
// shows the value in the running container.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	args := os.Args[1:]
	once := false
	if len(args) > 0 && args[0] == "--once" {
		once = true
		args = args[1:]
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	for _, name := range args {
		if v, ok := os.LookupEnv(name); ok {
			fmt.Printf("sample-app: %s=%s\n", name, v)
		} else {
			fmt.Printf("sample-app: %s is not set\n", name)
		}
	}
	if once {
		return
	}
	s := <-sigs
	fmt.Printf("sample-app: %v, exiting\n", s)
}
