package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Proc is a long-running process started by Env.Start inside a namespace. Its
// stdout and stderr go to LogPath.
type Proc struct {
	Label   string
	NS      *NS
	Cmd     *exec.Cmd
	LogPath string

	done    chan struct{}
	waitErr error // valid once done is closed
}

// Start runs name with args inside ns in the background and returns at once. The
// process leads its own process group, so Stop and Cleanup also reach children it
// spawns; it is killed by Cleanup at the latest.
func (e *Env) Start(ns *NS, name string, args ...string) *Proc {
	e.t.Helper()
	return e.StartCmd(ns, filepath.Base(name), ns.Command(context.Background(), name, args...))
}

// StartCmd starts cmd, made with ns.Command and then perhaps given Env or Dir,
// under the same rules as Start. label names the log file. If cmd.Stdout and
// cmd.Stderr are both nil they go to the log file; otherwise they are left as set.
func (e *Env) StartCmd(ns *NS, label string, cmd *exec.Cmd) *Proc {
	e.t.Helper()
	if ns == nil || ns.env != e {
		e.t.Fatalf("netns: start %s: namespace missing or from another Env", label)
	}
	e.mu.Lock()
	closed, n := e.closed, e.nlog
	e.nlog++ // unique log file names, even for parallel starts
	e.mu.Unlock()
	if closed {
		e.t.Fatalf("netns: Start after Cleanup")
	}

	p := &Proc{Label: label, NS: ns, Cmd: cmd, done: make(chan struct{})}
	p.LogPath = filepath.Join(e.logDir, fmt.Sprintf("%02d-%s.log", n, sanitize(label)))
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatalf("netns: log file: %v", err)
	}
	// The child writes to the file directly: no copying goroutine that could lose the
	// last lines, and the log survives a kill -9 of either side.
	defer logf.Close()
	if cmd.Stdout == nil && cmd.Stderr == nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	cmd.SysProcAttr.Setpgid = true

	if err := cmd.Start(); err != nil {
		e.t.Fatalf("netns: start %s: %v", label, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()

	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p
}

// PID is the process's id (the command's own, not that of a wrapper).
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns what exec.Cmd.Wait returned.
func (p *Proc) Wait() error {
	<-p.done
	return p.waitErr
}

// Exited reports whether the process has exited, and if so its Wait error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Signal sends sig to the process (not its group), unless it has already been
// reaped: its PID might then belong to someone else.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.Cmd.Process.Signal(sig)
}

// Kill sends SIGKILL to the process alone, like `kill -9 PID`, and waits for it.
// Its children, if any, keep running until Stop or Cleanup. The result is the
// Wait error, normally "signal: killed".
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return p.Wait()
}

// Stop asks the process to exit with SIGTERM and waits up to grace for it; then it
// sends SIGKILL to the whole process group. It returns the Wait error: nil when
// the process handled SIGTERM and exited 0, which is what a clean shutdown test
// wants to see. Stopping an exited process just returns its Wait error.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
	}
	// Also kill grandchildren left in the group, whether or not the leader went
	// quietly. The group id is the leader's pid, which the kernel does not hand out
	// again while the group has members; once it is empty, a stranger would have to
	// reuse the pid and lead a group with it in the same instant to be hit.
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	return p.Wait()
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}
