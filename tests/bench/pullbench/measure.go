package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// figure is what one run of a step cost.
type figure struct {
	wall time.Duration
	cpu  time.Duration // user + system: steadier than wall on a busy machine
	rss  int64         // KiB, of the largest process of the step
}

// add accumulates the figure of a step into that of a pipeline: times add
// up, memory does not, as the steps run one after the other.
func (f figure) add(g figure) figure {
	return figure{wall: f.wall + g.wall, cpu: f.cpu + g.cpu, rss: max(f.rss, g.rss)}
}

// best keeps the fastest wall and CPU times and the largest RSS of runs.
func best(runs []figure) figure {
	b := runs[0]
	for _, f := range runs[1:] {
		b.wall, b.cpu, b.rss = min(b.wall, f.wall), min(b.cpu, f.cpu), max(b.rss, f.rss)
	}
	return b
}

// measure runs args with env added to the environment, its output going
// to stdout (nil: discarded) and stderr. The child and what it starts form
// a process group of their own, so that cancelling ctx kills all of them;
// wait4 counts the CPU time of the children the child reaped, and their
// peak RSS when larger than its own.
func measure(ctx context.Context, env []string, stdout io.Writer, args ...string) (figure, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return figure{}, fmt.Errorf("%v: %w", args, err)
	}
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return figure{wall: wall, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rss: ru.Maxrss}, nil
}
