package tessera_test

// The network runtime without a coordinator (nothing listens: it keeps
// trying to connect, as it must): configuration errors, a runtime from a
// Config and from the operator's TOML file on the Vulkan device, stepped by
// the test's own loop, then run on its own thread and stopped by its
// context; status from other goroutines; the log function; calls from
// callbacks refused instead of deadlocking.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tessera "github.com/tessera-compute/tessera/bindings/go"
)

var pin = tessera.Hash{0xAB}

// logLines collects the library's log lines for a test.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(level tessera.LogLevel, target, message string) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s: %s", level, target, message))
	l.mu.Unlock()
}

func (l *logLines) find(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *logLines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// captureLog sends the library's lines to a new logLines for the test.
func captureLog(t *testing.T, level tessera.LogLevel) *logLines {
	t.Helper()
	l := &logLines{}
	if err := tessera.SetLogger(l.add, level); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tessera.SetLogger(nil, tessera.LogOff); err != nil {
			t.Error(err)
		}
	})
	return l
}

func unreachableConfig() tessera.Config {
	c := tessera.DefaultConfig()
	c.Coordinator = "127.0.0.1:1"
	c.ServerName = "localhost"
	c.PinnedKey = &pin
	c.DrainTimeout = 500 * time.Millisecond
	return c
}

func TestRuntimeConfigErrors(t *testing.T) {
	c := tessera.DefaultConfig()
	if c.DeviceIndex != -1 || !c.SPIRVValGate || c.DrainTimeout <= 0 || c.Policy.MaxConcurrent == 0 {
		t.Fatalf("defaults %+v", c)
	}
	_, err := tessera.NewRuntime(c, seedSigner(t))
	wantCode(t, err, tessera.ErrInvalidConfig)
	if !strings.Contains(err.Error(), "coordinator") {
		t.Errorf("the field is not named: %v", err)
	}
	c.Coordinator = "127.0.0.1:1"
	_, err = tessera.NewRuntime(c, seedSigner(t))
	wantCode(t, err, tessera.ErrInvalidConfig)
	if !strings.Contains(err.Error(), "[tls]") {
		t.Errorf("the trust is not named: %v", err)
	}
	c.PinnedKey = &pin
	c.Policy.MaxConcurrent = 300
	_, err = tessera.NewRuntime(c, seedSigner(t))
	wantCode(t, err, tessera.ErrInvalidConfig)
	if !strings.Contains(err.Error(), "max_concurrent") {
		t.Errorf("the field is not named: %v", err)
	}
	c.Policy.MaxConcurrent = 1
	c.DeviceIndex = -7
	_, err = tessera.NewRuntime(c, seedSigner(t))
	wantCode(t, err, tessera.ErrInvalidConfig)
	c.DeviceIndex = 1000
	_, err = tessera.NewRuntime(c, seedSigner(t))
	wantCode(t, err, tessera.ErrVulkanDeviceNotFound)
	c.DeviceIndex = -1
	c.StoreDir = "a\x00b"
	taken := seedSigner(t)
	_, err = tessera.NewRuntime(c, taken)
	wantCode(t, err, tessera.ErrInvalidArgument)
	_, err = taken.Sign(nil)
	wantCode(t, err, tessera.ErrStopped) // taken over all the same
	c.StoreDir = ""
	_, err = tessera.NewRuntime(c, nil)
	wantCode(t, err, tessera.ErrNullArgument)
	c.Executor = &tessera.Executor{}
	_, err = tessera.NewRuntime(c, seedSigner(t))
	wantCode(t, err, tessera.ErrInvalidConfig)

	_, err = tessera.NewRuntimeFromTOML("/nonexistent/agent.toml", nil)
	wantCode(t, err, tessera.ErrIO)
	if !strings.Contains(err.Error(), "/nonexistent/agent.toml") {
		t.Errorf("the file is not named: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("coordinator = 5\n"), 0o600)
	_, err = tessera.NewRuntimeFromTOML(bad, nil)
	wantCode(t, err, tessera.ErrInvalidConfig)
	_, err = tessera.NewRuntimeFromTOML(bad, &tessera.Executor{})
	wantCode(t, err, tessera.ErrInvalidConfig)

	wantCode(t, tessera.SetLogger(func(tessera.LogLevel, string, string) {}, 99), tessera.ErrInvalidArgument)
}

func TestRuntimeSteppedThenRun(t *testing.T) {
	logs := captureLog(t, tessera.LogInfo)
	rt, err := tessera.NewRuntime(unreachableConfig(), seedSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	gcStress()
	if !logs.find("device: ") {
		t.Error("no device line logged")
	}

	// The host's loop: poll the descriptor until the next wake-up, step.
	fd, err := rt.FD()
	if err != nil || fd < 0 {
		t.Fatalf("fd %d %v", fd, err)
	}
	for i := 0; i < 5; i++ {
		wait, ok, err := rt.NextWakeup()
		if err != nil {
			t.Fatal(err)
		}
		ms := 20
		if ok && wait < 20*time.Millisecond {
			ms = int(wait / time.Millisecond)
		}
		if err := waitReadable(fd, ms); err != nil {
			t.Fatal(err)
		}
		if err := rt.Step(0); err != nil {
			t.Fatal(err)
		}
		gcStress()
	}
	st, err := rt.Status()
	if err != nil || st.State != tessera.ConnDisconnected || st.Sessions != 0 || st.Finished {
		t.Fatalf("status %+v %v", st, err)
	}
	line, err := rt.StatusText()
	if err != nil || !strings.Contains(line, "127.0.0.1:1") {
		t.Fatalf("status line %q %v", line, err)
	}
	// The runtime's key is the one of the signer it took.
	signer := seedSigner(t)
	want, err := signer.PublicKey()
	signer.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rt.PublicKey(); err != nil || got != want {
		t.Fatalf("public key %x %v, want %x", got, err, want)
	}

	// The user renders: the device takes no new work.
	if err := rt.SetAcceptingJobs(false); err != nil {
		t.Fatal(err)
	}
	rt.Step(0)
	if st, _ := rt.Status(); !st.DeviceUnavailable {
		t.Error("still available")
	}
	rt.SetAcceptingJobs(true)
	rt.Step(0)
	if st, _ := rt.Status(); st.DeviceUnavailable {
		t.Error("still unavailable")
	}

	// A log line during a step: the log function's calls that need the
	// runtime to itself are refused, the others work.
	var inner struct {
		sync.Mutex
		step, status, logger error
		calls                int
	}
	if err := tessera.SetLogger(func(level tessera.LogLevel, target, message string) {
		logs.add(level, target, message)
		inner.Lock()
		defer inner.Unlock()
		inner.calls++
		inner.step = rt.Step(0)
		_, inner.status = rt.Status()
		inner.logger = tessera.SetLogger(nil, tessera.LogOff)
	}, tessera.LogTrace); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50 && func() bool { inner.Lock(); defer inner.Unlock(); return inner.calls == 0 }(); i++ {
		rt.Step(10 * time.Millisecond)
	}
	if err := tessera.SetLogger(logs.add, tessera.LogInfo); err != nil {
		t.Fatal(err)
	}
	inner.Lock()
	if inner.calls == 0 {
		t.Fatal("no line logged during a step")
	}
	wantCode(t, inner.step, tessera.ErrInUse)
	wantCode(t, inner.logger, tessera.ErrInUse)
	if inner.status != nil {
		t.Errorf("status from the log function: %v", inner.status)
	}
	inner.Unlock()

	// Its own thread now, stopped by the context.
	var receipts atomic.Int32
	if err := rt.SetReceiptCallback(func(uint64, []byte) { receipts.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := tessera.SetLogger(logs.add, tessera.LogDebug); err != nil {
		t.Fatal(err)
	}
	before := logs.count()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	// Its thread runs once it logs (connecting, and failing to).
	for i := 0; logs.count() == before; i++ {
		if i == 3000 {
			t.Fatal("the runtime's thread logged nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Only the calls that may run at any time apply meanwhile.
	wantCode(t, rt.Step(0), tessera.ErrInUse)
	if _, err := rt.Status(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, rt.SetReceiptCallback(nil), tessera.ErrInUse)
	wantCode(t, rt.Run(ctx), tessera.ErrInUse)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	st, err = rt.Status()
	if err != nil || !st.Finished {
		t.Fatalf("status after the drain %+v %v", st, err)
	}
	if !logs.find("drain") {
		t.Error("the drain was not logged")
	}
	// After the drain.
	wantCode(t, rt.Step(0), tessera.ErrStopped)
	wantCode(t, rt.Run(context.Background()), tessera.ErrStopped)
	if err := rt.Drain(0); err != nil {
		t.Fatal(err)
	}
	if receipts.Load() != 0 {
		t.Error("a receipt without a coordinator")
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = rt.Status()
	wantCode(t, err, tessera.ErrStopped)
	wantCode(t, rt.Step(0), tessera.ErrStopped)
	_, err = rt.StatusText()
	wantCode(t, err, tessera.ErrStopped)
	_, err = rt.FD()
	wantCode(t, err, tessera.ErrStopped)
	_, _, err = rt.NextWakeup()
	wantCode(t, err, tessera.ErrStopped)
	wantCode(t, rt.Drain(0), tessera.ErrStopped)
	wantCode(t, rt.SetAcceptingJobs(true), tessera.ErrStopped)
	wantCode(t, rt.SetReceiptCallback(nil), tessera.ErrStopped)
	wantCode(t, rt.Run(context.Background()), tessera.ErrStopped)
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
}

// Close while Run runs: it drains the runtime and waits for Run.
func TestRuntimeCloseWhileRunning(t *testing.T) {
	rt, err := tessera.NewRuntime(unreachableConfig(), seedSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := captureLog(t, tessera.LogDebug)
	// Its log lines also ask for its status, as a host showing it with
	// each line would: Close must not deadlock on that.
	var statusCalls atomic.Int32
	if err := tessera.SetLogger(func(level tessera.LogLevel, target, message string) {
		logs.add(level, target, message)
		rt.Status()
		statusCalls.Add(1)
	}, tessera.LogDebug); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(context.Background()) }()
	// Its thread runs once it logs (connecting, and failing to).
	for i := 0; logs.count() == 0; i++ {
		if i == 1000 {
			t.Fatal("the runtime's thread logged nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- rt.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	default:
		t.Fatal("Close returned before Run")
	}
	if statusCalls.Load() == 0 {
		t.Error("the log function never ran")
	}
}

func writeTOML(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "agent.toml")
	text := fmt.Sprintf(`coordinator = "127.0.0.1:1"
[tls]
pinned_key_sha256 = "%s"
[key]
file = "%s/device.key"
[store]
dir = "%s/store"
[timers]
drain_timeout_s = 2
`, pin, dir, dir)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRuntimeFromTOML(t *testing.T) {
	dir := t.TempDir()
	rt, err := tessera.NewRuntimeFromTOML(writeTOML(t, dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := os.Stat(filepath.Join(dir, "device.key")); err != nil {
		t.Errorf("no key was created: %v", err)
	}
	if err := rt.Step(0); err != nil {
		t.Fatal(err)
	}
	// Drained before it ran: Run returns at once.
	if err := rt.Drain(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run waited for the context")
	}
}

// waitReadable waits at most ms milliseconds for fd to become readable.
func waitReadable(fd, ms int) error {
	var set syscall.FdSet
	set.Bits[fd/64] |= 1 << (uint(fd) % 64)
	tv := syscall.NsecToTimeval(int64(ms) * int64(time.Millisecond))
	_, err := syscall.Select(fd+1, &set, nil, nil, &tv)
	if err == syscall.EINTR {
		return nil
	}
	return err
}
