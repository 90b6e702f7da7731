// Package crashtest helps tests that kill a writer half-way: the test
// binary re-executes itself in a mode its TestMain selects from the
// environment, and is killed while it works.
package crashtest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// KillAfter re-executes the test binary with env added (which selects the
// child's mode in TestMain) and kills it with SIGKILL after d. The child
// must still be running then: one that ended first fails the test, since
// it was not killed half-way.
func KillAfter(t testing.TB, d time.Duration, env ...string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%v: ended with %v before it was killed:\n%s", env, err, stderr.Bytes())
	}
}

// Rand returns a generator of kill times seeded from the clock, and logs
// the seed so that a failing run can be told apart and retraced.
func Rand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill times drawn with seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0))
}
